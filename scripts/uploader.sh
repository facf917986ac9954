#!/bin/sh
# uploader.sh - send a log archive to Logs Collector from a console.
#
# Usage:
#   sh uploader.sh -f FILE -t TOKEN -u BASE_URL
#   sh uploader.sh -f FILE -t TOKEN -d DOMAIN        (same as -u https://DOMAIN)
#
# Example:
#   sh uploader.sh -f /var/log/app-logs.tar.gz -t 'q9Xc...' -d logs.example.com
#
# What it does, one function per step:
#   check_token    GET  {base}/api/v1/check/token/{token}; stops before sending a byte of the
#                  file when the token is unknown, used up, expired or its ticket resolved
#   upload_simple  POST {base}/api/v1/archives/ as multipart/form-data (field "file") with
#                  the header "Upload-Token: TOKEN"; a progress bar when stderr is a terminal
#   verify_hash    compares the sha256 the server computed with the local file's
#                  (computed while the upload runs, so big files are not read twice in a row)
# A resumable (tus) upload can be added as another upload_* step; the others stay as they are.
#
# Needs only a POSIX sh, curl and standard tools (sed, wc, tr, cut, mktemp), plus sha256sum
# or shasum (or openssl) for the check. JSON answers are read with sed, no jq or python.
#
# Environment (optional):
#   UPLOADER_CONNECT_TIMEOUT  seconds to wait for a connection (default 30)
#   UPLOADER_STALL_TIMEOUT    abort an upload after this many seconds without progress,
#                             including while the server stores a large file (default 600)
#   CURL_CA_BUNDLE            CA certificates for a server with a private certificate authority
#   https_proxy, http_proxy   as usual for curl
#
# Exit status:
#   0 uploaded and verified     1 other failure               2 bad usage or unusable file
#   3 the token was refused     4 the server refused the upload or failed
#   5 network or TLS failure    6 uploaded, but the checksums differ

set -u
# Byte-wise, predictable sed, tr and globbing whatever the user's locale is.
LC_ALL=C
export LC_ALL

VERSION=2.0.0
PROG=${0##*/}
NL='
'

FILE=
TOKEN=
URL=
DST=
BASE=
SIZE=
CONNECT_TIMEOUT=${UPLOADER_CONNECT_TIMEOUT:-30}
STALL_TIMEOUT=${UPLOADER_STALL_TIMEOUT:-600}

# Set by run_curl, read by the steps.
CURL_RC=0
HTTP_STATUS=000
HTTP_BODY=
REDIRECT_URL=

# The background hash of the local file.
HASH_TOOL=
HASH_DIR=
HASH_PID=

# --- messages --------------------------------------------------------------------------

usage() {
    cat <<EOF
Usage: $PROG -f FILE -t TOKEN (-u BASE_URL | -d DOMAIN)

Upload a log archive to Logs Collector with the upload token of your support ticket.

Options:
  -f, --file FILE      the file to send (any format: tar.gz, zip, plain .log ...)
  -t, --token TOKEN    the upload token support gave you
  -u, --url BASE_URL   the server, http:// or https:// (e.g. https://logs.example.com)
  -d, --dst DOMAIN     the server's domain name; the same as -u https://DOMAIN
  -h, --help           show this help and exit
  -v, --version        show the version and exit

The token is checked first: nothing is sent when it cannot be used. After the upload the
server's sha256 of the archive is compared with the local file's.

Exit status: 0 uploaded and verified, 2 bad usage or file, 3 token refused,
4 upload refused by the server, 5 network or TLS failure, 6 checksums differ, 1 other.
EOF
}

info() {
    printf '%s\n' "$*" >&2
}

die() {
    status=$1
    shift
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit "$status"
}

usage_error() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    printf "Try '%s --help' for more information.\n" "$PROG" >&2
    exit 2
}

# --- arguments -------------------------------------------------------------------------

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            -f | --file | -t | --token | -u | --url | -d | --dst)
                [ $# -ge 2 ] || usage_error "option $1 needs a value"
                set_option "$1" "$2"
                shift 2
                ;;
            --file=* | --token=* | --url=* | --dst=*)
                set_option "${1%%=*}" "${1#*=}"
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            -v | --version)
                printf '%s %s\n' "$PROG" "$VERSION"
                exit 0
                ;;
            --)
                shift
                break
                ;;
            -*) usage_error "unknown option: $1" ;;
            *) usage_error "unexpected argument: $1" ;;
        esac
    done
    [ $# -eq 0 ] || usage_error "unexpected argument: $1"

    [ -n "$FILE" ] || usage_error "no file given (-f FILE)"
    [ -n "$TOKEN" ] || usage_error "no upload token given (-t TOKEN)"
    if [ -n "$URL" ] && [ -n "$DST" ]; then
        usage_error "give either -u BASE_URL or -d DOMAIN, not both"
    fi
    [ -n "$URL$DST" ] || usage_error "no server given (-u BASE_URL or -d DOMAIN)"
}

set_option() {
    case $1 in
        -f | --file) FILE=$2 ;;
        -t | --token) TOKEN=$2 ;;
        -u | --url) URL=$2 ;;
        -d | --dst) DST=$2 ;;
    esac
}

# --- checks before anything goes on the wire -------------------------------------------

resolve_base_url() {
    if [ -n "$DST" ]; then
        case $DST in
            *://*) usage_error "-d takes a domain name, not a URL (use -u $DST)" ;;
        esac
        BASE=https://$DST
    else
        BASE=$URL
    fi
    case $BASE in
        http://?* | https://?*) ;;
        *) usage_error "the server URL must start with http:// or https:// (got: $BASE)" ;;
    esac
    case $BASE in
        *[[:space:][:cntrl:]]*)
            usage_error "the server URL contains spaces or control characters: $BASE" ;;
    esac
    # Accept the base with a trailing slash or with the API prefix pasted in.
    while :; do
        case $BASE in
            */) BASE=${BASE%/} ;;
            */api/v1) BASE=${BASE%/api/v1} ;;
            *) break ;;
        esac
    done
}

check_token_syntax() {
    # Tokens are URL-safe (letters, digits, - and _; older ones are UUIDs). Anything else
    # would change the check URL or the upload header, so it is refused here.
    case $TOKEN in
        *[!A-Za-z0-9_-]*)
            die 2 "the upload token contains characters a token never has;" \
                "copy it again from the support ticket" ;;
    esac
}

check_file() {
    [ -e "$FILE" ] || die 2 "no such file: $FILE"
    [ -f "$FILE" ] || die 2 "not a regular file: $FILE"
    [ -r "$FILE" ] || die 2 "cannot read the file (permission denied?): $FILE"
    SIZE=$(wc -c <"$FILE" | tr -d ' ')
    [ "$SIZE" -gt 0 ] 2>/dev/null || die 2 "the file is empty: $FILE"
}

pick_hash_tool() {
    if command -v sha256sum >/dev/null 2>&1; then
        HASH_TOOL=sha256sum
    elif command -v shasum >/dev/null 2>&1; then
        HASH_TOOL=shasum
    elif command -v openssl >/dev/null 2>&1; then
        HASH_TOOL=openssl
    else
        HASH_TOOL=
        info "warning: no sha256sum, shasum or openssl found; the upload cannot be verified"
    fi
}

# --- HTTP ------------------------------------------------------------------------------

# run_curl ARGS... : run curl; set CURL_RC, HTTP_STATUS, HTTP_BODY and REDIRECT_URL.
# -q first, so a ~/.curlrc cannot change what this script reads back.
run_curl() {
    CURL_OUT=$(curl -q --connect-timeout "$CONNECT_TIMEOUT" \
        -w "$NL%{http_code} %{redirect_url}" "$@")
    CURL_RC=$?
    last=${CURL_OUT##*"$NL"}
    HTTP_BODY=${CURL_OUT%"$NL"*}
    [ "$HTTP_BODY" != "$CURL_OUT" ] || HTTP_BODY=
    HTTP_STATUS=${last%% *}
    REDIRECT_URL=${last#* }
    case $HTTP_STATUS in
        [0-9][0-9][0-9]) ;;
        *) HTTP_STATUS=000 ;;
    esac
}

# json_value NAME : the value of the first "NAME" key in HTTP_BODY (a string unquoted, or
# a number or true/false/null), empty when absent. Escaped quotes and backslashes are hidden
# as \uXXXX first, so every '"' left is JSON syntax; the body is then cut at the first key
# and the value read from the start of the second line; json_unescape decodes the string.
json_value() {
    {
        printf '%s' "$HTTP_BODY" | tr '\r\n' '  '
        echo
    } |
        sed -e 's/\\\\/\\u005c/g' -e 's/\\"/\\u0022/g' -e 's/"'"$1"'" *: */\
/' |
        sed -n -e '2s/^"\([^"]*\)".*/\1/p' -e t -e '2s/^\([^]}, ]*\).*/\1/p' |
        json_unescape
}

# JSON string escapes to text: \uXXXX (and surrogate pairs) to UTF-8 bytes, \/ to /,
# control characters to a space. POSIX awk; LC_ALL=C makes %c print one byte.
json_unescape() {
    awk '
    function hex(s,    i, n) {
        n = 0
        for (i = 1; i <= 4; i++)
            n = n * 16 + index("0123456789abcdef", tolower(substr(s, i, 1))) - 1
        return n
    }
    function utf8(n) {
        if (n < 32) return " "
        if (n < 128) return sprintf("%c", n)
        if (n < 2048) return sprintf("%c%c", 192 + int(n / 64), 128 + n % 64)
        if (n < 65536)
            return sprintf("%c%c%c", 224 + int(n / 4096), 128 + int(n / 64) % 64, 128 + n % 64)
        return sprintf("%c%c%c%c", 240 + int(n / 262144), 128 + int(n / 4096) % 64,
                       128 + int(n / 64) % 64, 128 + n % 64)
    }
    {
        out = ""
        rest = $0
        while ((i = index(rest, "\\")) > 0) {
            out = out substr(rest, 1, i - 1)
            c = substr(rest, i + 1, 1)
            rest = substr(rest, i + 2)
            if (c == "u" && rest ~ /^[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]/) {
                n = hex(rest)
                rest = substr(rest, 5)
                if (n >= 55296 && n < 56320 &&
                    rest ~ /^\\u[dD][c-fC-F][0-9A-Fa-f][0-9A-Fa-f]/) {
                    n = 65536 + (n - 55296) * 1024 + hex(substr(rest, 3)) - 56320
                    rest = substr(rest, 7)
                }
                out = out utf8(n)
            } else if (c == "/") {
                out = out "/"
            } else {
                out = out " "
            }
        }
        print out rest
    }'
}

# What the server said: its JSON "detail", or the start of whatever else it answered.
server_detail() {
    detail=$(json_value detail)
    if [ -z "$detail" ]; then
        detail=$(printf '%s' "$HTTP_BODY" | tr '\r\n\t' '   ' |
            sed -e 's/<[^>]*>/ /g' -e 's/  */ /g' -e 's/^ //' | cut -c 1-200)
    fi
    detail=${detail%.}
    printf '%s' "${detail:-no explanation given}"
}

# curl_failed WHAT : explain curl's exit code and stop.
curl_failed() {
    what=$1
    case $CURL_RC in
        1) reason="curl does not support this protocol (is it built without TLS?)" ;;
        3) reason="the URL is malformed: $BASE" ;;
        5) reason="could not resolve the proxy" ;;
        6) reason="could not resolve the server's name (check -u/-d and DNS)" ;;
        7)
            reason="could not connect: connection refused or host unreachable"
            reason="$reason (is the address right, the server running, a firewall open?)" ;;
        26) reason="could not read the file: $FILE" ;;
        28)
            reason="timed out (no connection within ${CONNECT_TIMEOUT}s, or no progress"
            reason="$reason for ${STALL_TIMEOUT}s; see UPLOADER_CONNECT_TIMEOUT and"
            reason="$reason UPLOADER_STALL_TIMEOUT)" ;;
        35) reason="the TLS handshake failed (does the server speak https on this port?)" ;;
        51 | 60)
            reason="the server's TLS certificate could not be verified"
            reason="$reason (for a private CA set CURL_CA_BUNDLE=/path/to/ca.pem)" ;;
        52) reason="the server closed the connection without answering" ;;
        55) reason="the connection broke while sending" ;;
        56) reason="the connection broke while receiving the answer" ;;
        58 | 59 | 66 | 77 | 80 | 83 | 90 | 91) reason="TLS setup failed (curl error $CURL_RC)" ;;
        *) reason="curl failed with exit code $CURL_RC (see 'man curl', EXIT CODES)" ;;
    esac
    die 5 "$what $BASE: $reason"
}

# A 3xx is never followed: a POST would be turned into a GET and the file lost on the way.
redirected() {
    die 1 "the server answered HTTP $HTTP_STATUS, a redirect to ${REDIRECT_URL:-elsewhere};" \
        "run again with -u set to the new address"
}

# --- steps -----------------------------------------------------------------------------

check_token() {
    info "Checking the upload token at $BASE ..."
    run_curl -sS --max-time 120 -H 'Accept: application/json' \
        "$BASE/api/v1/check/token/$TOKEN"
    [ "$CURL_RC" -eq 0 ] || curl_failed "could not check the token at"
    case $HTTP_STATUS in
        200) ;;
        404)
            die 3 "token refused: $(server_detail)." \
                "Check the token (and the server address), or ask support for a new one." ;;
        3??) redirected ;;
        *)
            die 4 "the server could not check the token (HTTP $HTTP_STATUS): $(server_detail)" ;;
    esac
    valid=$(json_value valid)
    case $valid in
        true) ;;
        false) die 3 "token refused: $(server_detail). Ask support for a new token." ;;
        *) die 1 "unexpected answer to the token check; is $BASE a Logs Collector?" ;;
    esac
    info "Token is valid: $(json_value attempts) upload attempt(s) left," \
        "usable until $(json_value expires_at)."
}

start_local_hash() {
    [ -n "$HASH_TOOL" ] || return 0
    HASH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/uploader.XXXXXX") || {
        info "warning: cannot create a temporary directory; hashing after the upload"
        return 0
    }
    # Read from stdin: with a file name, sha256sum escapes names with backslashes.
    case $HASH_TOOL in
        sha256sum) sha256sum <"$FILE" >"$HASH_DIR/sum" 2>"$HASH_DIR/err" & ;;
        shasum) shasum -a 256 <"$FILE" >"$HASH_DIR/sum" 2>"$HASH_DIR/err" & ;;
        openssl) openssl dgst -sha256 -r <"$FILE" >"$HASH_DIR/sum" 2>"$HASH_DIR/err" & ;;
    esac
    HASH_PID=$!
}

cleanup() {
    if [ -n "$HASH_PID" ]; then
        kill "$HASH_PID" 2>/dev/null
        wait "$HASH_PID" 2>/dev/null
    fi
    [ -z "$HASH_DIR" ] || rm -rf "$HASH_DIR"
}

upload_simple() {
    # curl -F treats ';' and ',' in a file name as syntax unless the name is quoted; inside
    # the quotes, '\' and '"' are escaped with a backslash.
    quoted=$(printf '%s' "$FILE" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
    name=${FILE##*/}
    quoted_name=$(printf '%s' "$name" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
    if [ -t 2 ]; then
        set -- --progress-bar
    else
        set -- -sS
    fi
    info "Uploading $FILE ($SIZE bytes) ..."
    run_curl "$@" --speed-limit 1 --speed-time "$STALL_TIMEOUT" \
        -H 'Accept: application/json' -H "Upload-Token: $TOKEN" \
        -F "file=@\"$quoted\";filename=\"$quoted_name\"" \
        "$BASE/api/v1/archives/"
    # The server may refuse (413, 507 ...) before it has read the body, and curl then
    # reports a broken send although an answer came: the answer is what matters.
    if [ "$CURL_RC" -ne 0 ]; then
        case $HTTP_STATUS in
            [45]??) ;;
            *) curl_failed "the upload failed:" ;;
        esac
    fi
    case $HTTP_STATUS in
        200 | 201) ;;
        3??) redirected ;;
        401) die 4 "the server did not receive the upload token: $(server_detail)" ;;
        403) die 3 "the upload token was refused: $(server_detail)" ;;
        413) die 4 "the file is larger than this server accepts: $(server_detail)." \
            "Split it, or ask support to raise the limit." ;;
        423) die 3 "the upload token can no longer be used: $(server_detail)." \
            "Ask support for a new token." ;;
        429) die 4 "too many requests; wait a little and try again: $(server_detail)" ;;
        507) die 4 "the server has not enough free storage: $(server_detail)." \
            "Please tell support; your token was not used up." ;;
        4??) die 4 "the server refused the upload (HTTP $HTTP_STATUS): $(server_detail)" ;;
        5??) die 4 "server error (HTTP $HTTP_STATUS): $(server_detail)." \
            "Try again later, or tell support." ;;
        *) die 1 "unexpected answer to the upload (HTTP $HTTP_STATUS): $(server_detail)" ;;
    esac

    ARCHIVE_ID=$(json_value id)
    ARCHIVE_NAME=$(json_value name)
    ARCHIVE_SIZE=$(json_value size)
    REMOTE_SHA256=$(json_value sha256)
    if [ -z "$ARCHIVE_ID" ] || [ -z "$REMOTE_SHA256" ]; then
        die 1 "the upload answer has no archive id or sha256: $(server_detail)"
    fi
    printf 'Uploaded archive %s to ticket %s\n' "$ARCHIVE_ID" "$(json_value ticket)"
    printf '  name:   %s\n' "$ARCHIVE_NAME"
    printf '  size:   %s bytes\n' "$ARCHIVE_SIZE"
    printf '  sha256: %s (server)\n' "$REMOTE_SHA256"
}

verify_hash() {
    if [ -z "$HASH_TOOL" ]; then
        info "WARNING: the upload was NOT verified (no sha256 tool); compare the sha256" \
            "above with the file's by other means."
        return 0
    fi
    if [ -n "$HASH_PID" ]; then
        wait "$HASH_PID"
        hash_rc=$?
        HASH_PID=
        sum=$(cat "$HASH_DIR/sum")
    else
        # No temporary directory: hash now.
        case $HASH_TOOL in
            sha256sum) sum=$(sha256sum <"$FILE") ;;
            shasum) sum=$(shasum -a 256 <"$FILE") ;;
            openssl) sum=$(openssl dgst -sha256 -r <"$FILE") ;;
        esac
        hash_rc=$?
    fi
    LOCAL_SHA256=${sum%%[[:space:]]*}
    if [ "$hash_rc" -ne 0 ] || [ -z "$LOCAL_SHA256" ]; then
        die 1 "could not compute the local sha256 with $HASH_TOOL" \
            "(the archive was uploaded as id $ARCHIVE_ID)"
    fi
    printf '  sha256: %s (local)\n' "$LOCAL_SHA256"
    if [ "$LOCAL_SHA256" != "$REMOTE_SHA256" ] || [ "$ARCHIVE_SIZE" != "$SIZE" ]; then
        {
            printf '\n'
            printf '!!! CHECKSUM MISMATCH: the archive on the server is NOT the local file !!!\n'
            printf '!!!   local : %s, %s bytes\n' "$LOCAL_SHA256" "$SIZE"
            printf '!!!   server: %s, %s bytes\n' "$REMOTE_SHA256" "$ARCHIVE_SIZE"
            printf '!!! Was the file still being written? Tell support about archive %s\n' \
                "$ARCHIVE_ID"
            printf '!!! and upload it again.\n'
        } >&2
        exit 6
    fi
    printf 'OK: the server has exactly this file.\n'
}

main() {
    parse_args "$@"
    resolve_base_url
    check_token_syntax
    check_file
    command -v curl >/dev/null 2>&1 || die 1 "curl is needed but was not found in PATH"
    pick_hash_tool
    check_token
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_local_hash
    upload_simple
    verify_hash
}

main "$@"
