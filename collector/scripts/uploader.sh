#!/bin/sh
# uploader.sh - send a log archive to Logs Collector from a console, resuming after any
# interruption.
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
#   detect_tus     OPTIONS {base}/api/v1/uploads/: a server that answers with a
#                  "Tus-Version" header naming 1.0.0 takes resumable uploads; any other
#                  answer (404 from an older server, a proxy refusing OPTIONS ...) means
#                  the single POST below
#   upload_tus     tus 1.0.0: POST creates the upload (its URL is printed and kept in the
#                  state file FILE.upload), then PATCH requests send the file in chunks of
#                  --chunk-size bytes, each read with dd and streamed to curl. After a
#                  failure it waits (1, 2, 4 ... 60 s), asks the server's offset with HEAD
#                  and goes on from there, up to --retries times in a row without progress.
#                  Running the same command again, or --resume URL, continues the upload.
#   upload_simple  POST {base}/api/v1/archives/ as multipart/form-data (field "file") with
#                  the header "Upload-Token: TOKEN"; for servers without tus
#   fetch_receipt  the last PATCH is answered 204 (tus 1.0.0) with the archive id and its
#                  sha256 in Upload-Archive-Id / Upload-Receipt-* headers; GET on the upload
#                  URL then gives the whole receipt (the headers stand in if it fails)
#   verify_hash    compares the sha256 the server computed with the local file's
#                  (computed while the upload runs, so big files are not read twice in a row)
#
# After a verified upload FILE.upload keeps its receipt. Run again on the same file (same
# server, token, size, and first and last 64 KiB), the script prints that receipt and asks
# before spending another upload attempt; --again uploads without asking; without a
# terminal to ask on it uploads nothing and exits 0 (the server has the file).
#
# No temporary directory is made: curl's headers are read from its output, and the local
# sha256 runs into FILE.upload-sum.PID beside FILE (removed at the end; one left by a
# killed run is removed by the next run once its PID is gone). Where nothing can be
# written beside FILE, the hash is computed after the upload instead.
#
# Needs only a POSIX sh, curl and standard tools (dd, od, awk, sed, wc, tr, cut, cksum),
# plus sha256sum or shasum (or openssl) for the check. JSON answers are read with
# sed, no jq or python.
#
# Environment (optional):
#   UPLOADER_CONNECT_TIMEOUT  seconds to wait for a connection (default 30)
#   UPLOADER_STALL_TIMEOUT    abort a request after this many seconds without progress,
#                             including while the server stores a large file (default 600)
#   UPLOADER_BACKOFF_MAX      longest wait between two retries, in seconds (default 60)
#   CURL_CA_BUNDLE            CA certificates for a server with a private certificate authority
#   https_proxy, http_proxy   as usual for curl
#
# Exit status:
#   0 uploaded and verified, or already uploaded (see above) and not sent again
#   1 other failure               2 bad usage or unusable file
#   3 the token was refused     4 the server refused the upload or failed
#   5 network or TLS failure    6 uploaded, but the checksums differ

set -u
# Byte-wise, predictable sed, tr and globbing whatever the user's locale is.
LC_ALL=C
export LC_ALL

VERSION=2.2.0
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
BACKOFF_MAX=${UPLOADER_BACKOFF_MAX:-60}
CHUNK_SIZE=64M
RETRIES=20
RESUME=
SINGLE=
AGAIN=
CR=$(printf '\r')

# The tus upload: its URL, the server's offset and the file next to FILE that remembers it.
UPLOAD_URL=
OFFSET=0
STATE_FILE=
FINGERPRINT=
TAIL_SUM=
FAILS=0
FAILURE=
RESTARTED=
RUN_START=0
RUN_START_OFFSET=0

# Set by run_curl, read by the steps.
CURL_RC=0
HTTP_STATUS=000
HTTP_HEADERS=
HTTP_BODY=
REDIRECT_URL=

# The receipt: from the server's JSON, its headers, or the state file of an earlier run.
ARCHIVE_ID=
ARCHIVE_TICKET=
ARCHIVE_NAME=
ARCHIVE_SIZE=
ARCHIVE_TIME=
REMOTE_SHA256=

# The background hash of the local file.
HASH_TOOL=
HASH_PID=
HASH_OUT=

# --- messages --------------------------------------------------------------------------

usage() {
    cat <<EOF
Usage: $PROG -f FILE -t TOKEN (-u BASE_URL | -d DOMAIN) [options]

Upload a log archive to Logs Collector with the upload token of your support ticket.

Options:
  -f, --file FILE         the file to send (any format: tar.gz, zip, plain .log ...)
  -t, --token TOKEN       the upload token support gave you
  -u, --url BASE_URL      the server, http:// or https:// (e.g. https://logs.example.com)
  -d, --dst DOMAIN        the server's domain name; the same as -u https://DOMAIN
  -c, --chunk-size SIZE   bytes per request of a resumable upload, with K, M or G
                          (powers of 1024); at most this much is sent again after a
                          dropped connection (default 64M)
  -r, --retries N         retries in a row without progress before giving up (default 20)
      --resume URL        continue the upload at URL (printed when an upload starts)
      --again             upload the file even if it was already uploaded, without asking
      --single-request    send the whole file in one POST, without resuming
  -h, --help              show this help and exit
  -v, --version           show the version and exit

The token is checked first: nothing is sent when it cannot be used. The upload resumes by
itself after a dropped connection; if the script is stopped, run the same command again
and it continues where it was (FILE.upload remembers the upload). After the upload the
server's sha256 of the archive is compared with the local file's.

Run again on a file it already uploaded, it prints the earlier receipt and asks before
uploading it again (each upload spends one of the token's attempts); --again answers yes.
Without a terminal to ask on (cron, CI) it uploads nothing and exits 0.

Exit status: 0 uploaded and verified (or already uploaded and not sent again),
2 bad usage or file, 3 token refused, 4 upload refused by the server,
5 network or TLS failure, 6 checksums differ, 1 other.
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
            -f | --file | -t | --token | -u | --url | -d | --dst | -c | --chunk-size | \
                -r | --retries | --resume)
                [ $# -ge 2 ] || usage_error "option $1 needs a value"
                set_option "$1" "$2"
                shift 2
                ;;
            --file=* | --token=* | --url=* | --dst=* | --chunk-size=* | --retries=* | \
                --resume=*)
                set_option "${1%%=*}" "${1#*=}"
                shift
                ;;
            --single-request)
                SINGLE=1
                shift
                ;;
            --again)
                AGAIN=1
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
    if [ -n "$RESUME" ] && [ -n "$SINGLE" ]; then
        usage_error "--resume continues a resumable upload; it cannot be --single-request"
    fi
    CHUNK_SIZE=$(parse_size "$CHUNK_SIZE") ||
        usage_error "--chunk-size takes a number of bytes with K, M or G, e.g. 64M" \
            "(got: $CHUNK_SIZE)"
    case $RETRIES in
        '' | *[!0-9]* | ?????*) usage_error "--retries takes a number from 0 to 9999 (got: $RETRIES)" ;;
    esac
    case $BACKOFF_MAX in
        '' | *[!0-9]* | ?????*) BACKOFF_MAX=60 ;;
    esac
}

set_option() {
    case $1 in
        -f | --file) FILE=$2 ;;
        -t | --token) TOKEN=$2 ;;
        -u | --url) URL=$2 ;;
        -d | --dst) DST=$2 ;;
        -c | --chunk-size) CHUNK_SIZE=$2 ;;
        -r | --retries) RETRIES=$2 ;;
        --resume) RESUME=$2 ;;
    esac
}

# parse_size SIZE : SIZE (digits, optionally K, M or G, powers of 1024) in bytes; at least
# 1 KiB and at most 4 GiB, so that one chunk never needs more than a moment to resend.
parse_size() {
    case $1 in
        '' | *[!0-9KkMmGg]* | *[KkMmGg]?* | [KkMmGg]*) return 1 ;;
    esac
    number=${1%[KkMmGg]}
    [ ${#number} -le 10 ] || return 1
    case $1 in
        *[Kk]) bytes=$((number * 1024)) ;;
        *[Mm]) bytes=$((number * 1048576)) ;;
        *[Gg]) bytes=$((number * 1073741824)) ;;
        *) bytes=$number ;;
    esac
    [ "$bytes" -ge 1024 ] && [ "$bytes" -le 4294967296 ] || return 1
    printf '%s\n' "$bytes"
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

# run_curl ARGS... : run curl; set CURL_RC, HTTP_STATUS, HTTP_HEADERS (for header_value),
# HTTP_BODY and REDIRECT_URL. send_chunk does the same for a PATCH whose body comes from dd.
run_curl() {
    CURL_OUT=$(curl_command "$@")
    CURL_RC=$?
    read_curl_output
}

# -q first, so a ~/.curlrc cannot change what this script reads back; -g, so that brackets
# in a URL are sent as they are. The response headers go to stdout before the body (-D -),
# so no file is needed for them.
curl_command() {
    curl -q -g --connect-timeout "$CONNECT_TIMEOUT" -D - \
        -w "$NL%{http_code} %{redirect_url}" "$@"
}

# read_curl_output : split curl's output into the headers of the final response (after any
# "100 Continue"), the body, and the status line written by -w.
read_curl_output() {
    last=${CURL_OUT##*"$NL"}
    rest=${CURL_OUT%"$NL"*}
    [ "$rest" != "$CURL_OUT" ] || rest=
    HTTP_HEADERS=
    end_of_headers="$CR$NL$CR$NL"
    while :; do
        case $rest in
            HTTP/*"$end_of_headers"*) ;;
            *) break ;;
        esac
        HTTP_HEADERS=${rest%%"$end_of_headers"*}
        rest=${rest#*"$end_of_headers"}
    done
    HTTP_BODY=$rest
    HTTP_STATUS=${last%% *}
    REDIRECT_URL=${last#* }
    case $HTTP_STATUS in
        [0-9][0-9][0-9]) ;;
        *) HTTP_STATUS=000 ;;
    esac
}

# header_value NAME : the value of the response header NAME of the last curl call (of the
# final response when there were several, e.g. after "100 Continue"), empty when absent.
header_value() {
    [ -n "$HTTP_HEADERS" ] || return 0
    printf '%s\n' "$HTTP_HEADERS" | tr -d '\r' | awk -v name="$1" '
        BEGIN { name = tolower(name) ":" }
        /^HTTP\// { value = "" }
        tolower(substr($0, 1, length(name))) == name {
            value = substr($0, length(name) + 1)
            sub(/^[ \t]+/, "", value)
            sub(/[ \t]+$/, "", value)
        }
        END { print value }'
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

# curl_reason : what curl's exit code means, in words.
curl_reason() {
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
    printf '%s' "$reason"
}

# curl_failed WHAT : explain curl's exit code and stop.
curl_failed() {
    die 5 "$1 $BASE: $(curl_reason)"
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

# remove_stale_files : the hash outputs (FILE.upload-sum.PID) that earlier runs killed
# with kill -9 (which runs no trap) left beside FILE, once that process is gone.
remove_stale_files() {
    for stale in "$FILE".upload-sum.*; do
        [ -f "$stale" ] || continue
        pid=${stale##*.}
        case $pid in
            '' | *[!0-9]*) continue ;;
        esac
        kill -0 "$pid" 2>/dev/null || rm -f "$stale"
    done
}

# start_local_hash : hash the file in the background while it is uploaded, into a file of
# this run beside FILE; where none can be written, verify_hash reads the file afterwards.
start_local_hash() {
    [ -n "$HASH_TOOL" ] || return 0
    out=$FILE.upload-sum.$$
    (: >"$out") 2>/dev/null || return 0
    HASH_OUT=$out
    # Read from stdin: with a file name, sha256sum escapes names with backslashes.
    case $HASH_TOOL in
        sha256sum) sha256sum <"$FILE" >"$HASH_OUT" 2>/dev/null & ;;
        shasum) shasum -a 256 <"$FILE" >"$HASH_OUT" 2>/dev/null & ;;
        openssl) openssl dgst -sha256 -r <"$FILE" >"$HASH_OUT" 2>/dev/null & ;;
    esac
    HASH_PID=$!
}

cleanup() {
    if [ -n "$HASH_PID" ]; then
        kill "$HASH_PID" 2>/dev/null
        wait "$HASH_PID" 2>/dev/null
    fi
    [ -z "$HASH_OUT" ] || rm -f "$HASH_OUT"
}

# refused WHAT : stop with the reason for a 4xx or 5xx answer (or an unexpected one).
refused() {
    case $HTTP_STATUS in
        3??) redirected ;;
        401) die 4 "the server did not receive the upload token: $(server_detail)" ;;
        403) die 3 "the upload token was refused: $(server_detail)" ;;
        413) die 4 "the file is larger than this server accepts: $(server_detail)." \
            "Split it, or ask support to raise the limit." ;;
        423) die 3 "the upload token can no longer be used: $(server_detail)." \
            "Ask support for a new token." ;;
        429) die 4 "too many requests; wait a little and try again: $(server_detail)" ;;
        507) die 4 "the server has not enough free storage: $(server_detail)." \
            "Please tell support; your token was not used up$1." ;;
        4??) die 4 "the server refused the upload (HTTP $HTTP_STATUS): $(server_detail)" ;;
        5??) die 4 "server error (HTTP $HTTP_STATUS): $(server_detail)." \
            "Try again later, or tell support." ;;
        *) die 1 "unexpected answer to the upload (HTTP $HTTP_STATUS): $(server_detail)" ;;
    esac
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
    info "Uploading $FILE ($SIZE bytes) in one request ..."
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
        *) refused "" ;;
    esac
    receipt_from_json
    print_receipt
}

# --- tus -------------------------------------------------------------------------------

# detect_tus : true when the server takes tus 1.0.0 uploads (see the top of this file).
detect_tus() {
    run_curl -sS --max-time 60 -o /dev/null -X OPTIONS -H 'Tus-Resumable: 1.0.0' \
        "$BASE/api/v1/uploads/"
    [ "$CURL_RC" -eq 0 ] || curl_failed "could not reach"
    versions=$(header_value Tus-Version | tr -d ' ')
    case $HTTP_STATUS,$versions in
        2??,1.0.0 | 2??,1.0.0,* | 2??,*,1.0.0 | 2??,*,1.0.0,*) return 0 ;;
    esac
    return 1
}

# base64 of stdin, with POSIX od and awk (base64(1) is not everywhere).
base64_encode() {
    od -An -v -tu1 | awk '
    BEGIN { t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" }
    { for (i = 1; i <= NF; i++) b[n++] = $i }
    END {
        for (i = 0; i < n; i += 3) {
            x = b[i] * 65536 + (i + 1 < n ? b[i + 1] * 256 : 0) + (i + 2 < n ? b[i + 2] : 0)
            out = out substr(t, int(x / 262144) % 64 + 1, 1) substr(t, int(x / 4096) % 64 + 1, 1)
            out = out (i + 1 < n ? substr(t, int(x / 64) % 64 + 1, 1) : "=")
            out = out (i + 2 < n ? substr(t, x % 64 + 1, 1) : "=")
        }
        printf "%s", out
    }'
}

# The state file remembers the upload of FILE to this server with this token; its
# fingerprint also covers the file's size and first 64 KiB, so a different file of the
# same name starts a new upload. A finished upload's record (state=done) also keeps the
# checksum of the file's last 64 KiB block and the receipt: reading two blocks is cheap for
# a file of any size, where hashing a whole one of tens of GB to recognise it is not.
state_init() {
    STATE_FILE=$FILE.upload
    token_sum=$(printf '%s' "$TOKEN" | cksum)
    head_sum=$(dd if="$FILE" bs=65536 count=1 2>/dev/null | cksum)
    FINGERPRINT="$BASE $SIZE ${token_sum%% *} ${head_sum%% *}"
    tail_sum=$(dd if="$FILE" bs=65536 skip=$(((SIZE - 1) / 65536)) count=1 2>/dev/null |
        cksum)
    TAIL_SUM=${tail_sum%% *}
}

# state_field NAME : the value of NAME= in the state file (empty when absent).
state_field() {
    sed -n "s/^$1=//p" "$STATE_FILE" | sed -n 1p
}

# state_url : the unfinished upload URL kept for this file, server, token and content.
state_url() {
    [ -f "$STATE_FILE" ] && [ -r "$STATE_FILE" ] || return 0
    [ "$(state_field state)" != 'done' ] || return 0
    [ "$(state_field fingerprint)" = "$FINGERPRINT" ] || return 0
    state_field url
}

# already_uploaded : true when the state file records a verified upload of this very file
# (same server, token, size, first and last block); the receipt is read from it.
already_uploaded() {
    [ -f "$STATE_FILE" ] && [ -r "$STATE_FILE" ] || return 1
    [ "$(state_field state)" = 'done' ] || return 1
    [ "$(state_field fingerprint)" = "$FINGERPRINT" ] || return 1
    [ "$(state_field tail)" = "$TAIL_SUM" ] || return 1
    ARCHIVE_ID=$(state_field archive)
    ARCHIVE_TICKET=$(state_field ticket)
    ARCHIVE_NAME=$(state_field name)
    ARCHIVE_SIZE=$(state_field size)
    ARCHIVE_TIME=$(state_field time)
    REMOTE_SHA256=$(state_field sha256)
    [ -n "$ARCHIVE_ID" ] && [ -n "$REMOTE_SHA256" ]
}

# confirm_again : the file was uploaded before; upload it again only when --again says so
# or the user answers yes on the terminal. Without a terminal nothing is sent and the run
# ends with 0: the server has the file (verified when it was uploaded).
confirm_again() {
    info "This file was already uploaded (verified), as archive $ARCHIVE_ID:"
    print_receipt
    if [ -n "$AGAIN" ]; then
        info "--again: uploading it once more."
        return 0
    fi
    if (: </dev/tty) 2>/dev/null && (: >/dev/tty) 2>/dev/null; then
        printf 'Upload it again? That spends another upload attempt of the token. [y/N] ' \
            >/dev/tty
        answer=
        read -r answer </dev/tty || answer=
        case $answer in
            [Yy] | [Yy][Ee][Ss]) return 0 ;;
        esac
        info "Not uploaded again."
        exit 0
    fi
    info "Not uploaded again (there is no terminal to ask on). To upload it once more," \
        "run the same command with --again, or delete $STATE_FILE."
    exit 0
}

# state_save_done : after a verified upload, the receipt for a later run of the same file.
state_save_done() {
    [ -n "$STATE_FILE" ] || return 0
    if ! {
        printf '# uploader.sh: %s was uploaded and verified. Running the same command\n' \
            "${FILE##*/}"
        printf '# again asks before uploading it once more; delete this file to forget it.\n'
        printf 'state=done\n'
        printf 'url=%s\n' "$UPLOAD_URL"
        printf 'fingerprint=%s\n' "$FINGERPRINT"
        printf 'tail=%s\n' "$TAIL_SUM"
        printf 'archive=%s\n' "$ARCHIVE_ID"
        printf 'ticket=%s\n' "$ARCHIVE_TICKET"
        printf 'name=%s\n' "$ARCHIVE_NAME"
        printf 'size=%s\n' "$ARCHIVE_SIZE"
        printf 'time=%s\n' "$ARCHIVE_TIME"
        printf 'sha256=%s\n' "$REMOTE_SHA256"
    } >"$STATE_FILE" 2>/dev/null; then
        info "note: cannot write $STATE_FILE; a later run will not know this file was uploaded"
    fi
}

state_save() {
    if ! {
        printf '# uploader.sh: an unfinished upload of %s. Run the same command again to\n' \
            "${FILE##*/}"
        printf '# resume it; delete this file to start over.\n'
        printf 'url=%s\n' "$UPLOAD_URL"
        printf 'fingerprint=%s\n' "$FINGERPRINT"
    } >"$STATE_FILE" 2>/dev/null; then
        info "note: cannot write $STATE_FILE; to resume later, add --resume $UPLOAD_URL"
    fi
}

state_remove() {
    [ ! -f "$STATE_FILE" ] || rm -f "$STATE_FILE"
}

# upload_url_of URL_OR_ID : the upload's URL on this server. Only the id at the end of the
# URL is taken and put after the -u address, so that a proxy that rewrites hosts or paths
# cannot send the chunks elsewhere.
upload_url_of() {
    id=${1%/}
    id=${id##*/}
    case $id in
        '' | *[!A-Za-z0-9_-]*) return 1 ;;
    esac
    printf '%s/api/v1/uploads/%s\n' "$BASE" "$id"
}

# tus_head : ask the upload's offset. Returns 0 with OFFSET set; 1 after a network failure
# or a 5xx (retry); 2 when the upload is gone or cannot be resumed (start a new one).
tus_head() {
    run_curl -sS --max-time 120 -I -o /dev/null -H 'Tus-Resumable: 1.0.0' \
        -H "Upload-Token: $TOKEN" "$UPLOAD_URL"
    if [ "$CURL_RC" -ne 0 ]; then
        FAILURE="the offset could not be asked: $(curl_reason)"
        return 1
    fi
    case $HTTP_STATUS in
        200)
            server_length=$(header_value Upload-Length)
            OFFSET=$(header_value Upload-Offset)
            case $OFFSET in
                '' | *[!0-9]*)
                    FAILURE="the server gave no offset"
                    return 1 ;;
            esac
            if [ "$server_length" != "$SIZE" ]; then
                FAILURE="it is an upload of ${server_length:-unknown} bytes, the file has $SIZE"
                return 2
            fi
            return 0 ;;
        404 | 410)
            FAILURE="the server no longer has it (HTTP $HTTP_STATUS)"
            return 2 ;;
        405 | 412)
            FAILURE="the server does not take resumable uploads there (HTTP $HTTP_STATUS)"
            return 2 ;;
        501 | 505 | 507) refused "" ;;
        408 | 409 | 429 | 5??)
            FAILURE="the server answered HTTP $HTTP_STATUS"
            return 1 ;;
        *) refused "" ;;
    esac
}

# tus_create : a new upload of SIZE bytes; sets UPLOAD_URL and OFFSET=0.
tus_create() {
    name=$(printf '%s' "${FILE##*/}" | base64_encode)
    while :; do
        run_curl -sS --max-time 120 -X POST -H 'Tus-Resumable: 1.0.0' \
            -H "Upload-Token: $TOKEN" -H 'Accept: application/json' \
            -H "Upload-Length: $SIZE" -H "Upload-Metadata: filename $name" \
            -H 'Content-Length: 0' "$BASE/api/v1/uploads/"
        if [ "$CURL_RC" -eq 0 ]; then
            case $HTTP_STATUS in
                201) break ;;
                501 | 505 | 507) refused "" ;;
                408 | 429 | 5??) FAILURE="the server answered HTTP $HTTP_STATUS: $(server_detail)" ;;
                *) refused "" ;;
            esac
        else
            FAILURE=$(curl_reason)
        fi
        backoff "could not start the upload: $FAILURE"
    done
    location=$(header_value Location)
    UPLOAD_URL=$(upload_url_of "$location") ||
        die 1 "the server's answer has no usable upload URL (Location: ${location:-none})"
    OFFSET=0
    FAILS=0
    state_save
    info "Upload started: $UPLOAD_URL"
    info "If it is interrupted, run the same command again to resume (or add --resume" \
        "$UPLOAD_URL)."
}

# backoff WHY : count a failure in a row; give up after --retries, else wait 1, 2, 4 ... s.
backoff() {
    FAILS=$((FAILS + 1))
    if [ "$FAILS" -gt "$RETRIES" ]; then
        if [ -n "$UPLOAD_URL" ]; then
            die 5 "$1. Gave up after $RETRIES retries at byte $OFFSET of $SIZE;" \
                "run the same command again to resume."
        fi
        die 5 "$1. Gave up after $RETRIES retries."
    fi
    delay=1
    n=1
    while [ "$n" -lt "$FAILS" ] && [ "$delay" -lt "$BACKOFF_MAX" ]; do
        delay=$((delay * 2))
        n=$((n + 1))
    done
    [ "$delay" -le "$BACKOFF_MAX" ] || delay=$BACKOFF_MAX
    info "$1; retry $FAILS of $RETRIES in ${delay}s ..."
    sleep "$delay"
}

# block_size OFFSET LENGTH : the largest dd block size (at most 1 MiB) that both OFFSET and
# LENGTH are multiples of (LENGTH need not be when the chunk ends the file).
block_size() {
    b=1048576
    while [ "$b" -gt 1 ]; do
        if [ $(($1 % b)) -eq 0 ]; then
            if [ $(($2 % b)) -eq 0 ] || [ $(($1 + $2)) -eq "$SIZE" ]; then
                break
            fi
        fi
        b=$((b / 2))
    done
    printf '%s\n' "$b"
}

# send_chunk LENGTH : PATCH the LENGTH bytes of FILE at OFFSET. dd reads them and curl sends
# them as they come (-T - with an explicit Content-Length instead of chunked encoding), so
# neither holds a chunk in memory.
send_chunk() {
    if [ -t 2 ] && [ "$1" -gt 0 ]; then
        progress=--progress-bar
    else
        progress=-sS
    fi
    set -- "$1" "$progress" --speed-limit 1 --speed-time "$STALL_TIMEOUT" -X PATCH \
        -H 'Tus-Resumable: 1.0.0' -H "Upload-Token: $TOKEN" -H 'Accept: application/json' \
        -H 'Content-Type: application/offset+octet-stream' -H "Upload-Offset: $OFFSET" \
        -H "Content-Length: $1" -H 'Transfer-Encoding:' -H 'Expect:'
    if [ "$1" -gt 0 ]; then
        block=$(block_size "$OFFSET" "$1")
        skip=$((OFFSET / block))
        count=$((($1 + block - 1) / block))
        shift
        CURL_OUT=$(dd if="$FILE" bs="$block" skip="$skip" count="$count" 2>/dev/null |
            curl_command "$@" -T - "$UPLOAD_URL")
    else
        shift
        CURL_OUT=$(curl_command "$@" "$UPLOAD_URL")
    fi
    CURL_RC=$?
    read_curl_output
}

human_size() {
    awk -v n="$1" 'BEGIN {
        if (n >= 1073741824) printf "%.1f GiB", n / 1073741824
        else if (n >= 1048576) printf "%.1f MiB", n / 1048576
        else if (n >= 1024) printf "%.1f KiB", n / 1024
        else printf "%d bytes", n
    }'
}

# progress_line : how far the upload is, the speed of this run and the time left.
progress_line() {
    now=$(date +%s)
    awk -v done="$OFFSET" -v size="$SIZE" -v sent="$((OFFSET - RUN_START_OFFSET))" \
        -v secs="$((now - RUN_START))" -v d="$(human_size "$OFFSET")" \
        -v s="$(human_size "$SIZE")" 'BEGIN {
        line = sprintf("Sent %s of %s (%d%%)", d, s, 100 * done / size)
        if (secs > 0 && sent > 0) {
            rate = sent / secs
            left = (size - done) / rate
            line = line sprintf(", %.1f MB/s, about %d:%02d:%02d left", rate / 1e6,
                                left / 3600, (left % 3600) / 60, left % 60)
        }
        print line
    }' >&2
}

# upload_tus : send the file from OFFSET of UPLOAD_URL (created first when empty) until the
# server has the whole file (204 at offset SIZE), then read the receipt (fetch_receipt).
upload_tus() {
    [ -n "$UPLOAD_URL" ] || tus_create
    RUN_START=$(date +%s)
    RUN_START_OFFSET=$OFFSET
    info "Uploading $FILE ($SIZE bytes) from byte $OFFSET in chunks of" \
        "$(human_size "$CHUNK_SIZE") ..."
    while :; do
        now_size=$(wc -c <"$FILE" | tr -d ' ')
        [ "$now_size" = "$SIZE" ] ||
            die 2 "the file changed size while it was being uploaded ($SIZE, now" \
                "$now_size bytes); upload it again once it is complete"
        length=$((SIZE - OFFSET))
        [ "$length" -le "$CHUNK_SIZE" ] || length=$CHUNK_SIZE
        send_chunk "$length"
        if [ "$CURL_RC" -ne 0 ]; then
            case $HTTP_STATUS in
                [45]??) ;;
                *)
                    FAILURE="the connection failed at byte $OFFSET: $(curl_reason)"
                    HTTP_STATUS=000 ;;
            esac
        fi
        case $HTTP_STATUS in
            200)
                # A server from before tus's 204 rule: the receipt is the body.
                state_remove
                receipt_from_json
                print_receipt
                return 0 ;;
            204)
                new_offset=$(header_value Upload-Offset)
                case $new_offset in
                    '' | *[!0-9]*) FAILURE="the server gave no new offset" ;;
                    *)
                        OFFSET=$new_offset
                        FAILS=0
                        progress_line
                        if [ "$OFFSET" = "$SIZE" ]; then
                            fetch_receipt
                            state_remove
                            print_receipt
                            return 0
                        fi
                        continue ;;
                esac ;;
            000) ;;
            404 | 410) restart_upload ;;
            409) FAILURE="the server is at another offset or busy with this upload (HTTP 409)" ;;
            501 | 505 | 507) refused " (run the same command again later to resume at byte $OFFSET)" ;;
            408 | 429 | 460 | 5??)
                FAILURE="the server answered HTTP $HTTP_STATUS at byte $OFFSET: $(server_detail)" ;;
            *) refused " (run the same command again later to resume at byte $OFFSET)" ;;
        esac
        # Something failed: wait, then ask where the server is and go on from there.
        while :; do
            backoff "$FAILURE"
            tus_head
            case $? in
                0) break ;;
                2)
                    restart_upload
                    break ;;
            esac
        done
    done
}

# restart_upload : the upload is gone (expired, removed by staff): start again, once.
restart_upload() {
    if [ -n "$RESTARTED" ]; then
        die 4 "the upload was lost on the server again ($FAILURE); tell support"
    fi
    RESTARTED=1
    info "The upload cannot be continued: ${FAILURE:-the server no longer has it}." \
        "Starting it again from the beginning."
    state_remove
    UPLOAD_URL=
    check_token
    tus_create
}

# resume_candidate : the upload to continue (--resume, or the state file), checked with
# HEAD. Sets UPLOAD_URL and OFFSET, or leaves UPLOAD_URL empty.
resume_candidate() {
    if [ -n "$RESUME" ]; then
        UPLOAD_URL=$(upload_url_of "$RESUME") ||
            usage_error "--resume takes the upload URL printed when the upload started" \
                "(got: $RESUME)"
    else
        UPLOAD_URL=$(state_url)
        [ -n "$UPLOAD_URL" ] || return 0
        UPLOAD_URL=$(upload_url_of "$UPLOAD_URL") || {
            UPLOAD_URL=
            return 0
        }
    fi
    info "Resuming $UPLOAD_URL ..."
    while :; do
        tus_head
        case $? in
            0)
                info "The server has $OFFSET of $SIZE bytes."
                state_save
                return 0 ;;
            2)
                [ -z "$RESUME" ] || die 4 "cannot resume $UPLOAD_URL: $FAILURE"
                info "The earlier upload cannot be resumed ($FAILURE); starting a new one."
                state_remove
                UPLOAD_URL=
                return 0 ;;
        esac
        backoff "$FAILURE"
    done
}

# receipt_from_json : the receipt fields from a JSON answer (HTTP_BODY).
receipt_from_json() {
    ARCHIVE_ID=$(json_value id)
    ARCHIVE_TICKET=$(json_value ticket)
    ARCHIVE_NAME=$(json_value name)
    ARCHIVE_SIZE=$(json_value size)
    ARCHIVE_TIME=$(json_value time_create)
    REMOTE_SHA256=$(json_value sha256)
    if [ -z "$ARCHIVE_ID" ] || [ -z "$REMOTE_SHA256" ]; then
        die 1 "the upload answer has no archive id or sha256: $(server_detail)"
    fi
}

# fetch_receipt : the 204 to the last chunk has no body (tus 1.0.0) but names the archive
# in its headers; GET on the upload URL gives the whole receipt. Should that GET fail, the
# headers are the receipt (the ticket and time are then not known here).
fetch_receipt() {
    ARCHIVE_ID=$(header_value Upload-Archive-Id)
    REMOTE_SHA256=$(header_value Upload-Receipt-Sha256)
    ARCHIVE_SIZE=$(header_value Upload-Receipt-Size)
    ARCHIVE_NAME=${FILE##*/}
    run_curl -sS --max-time 120 -H 'Accept: application/json' -H "Upload-Token: $TOKEN" \
        "$UPLOAD_URL"
    if [ "$CURL_RC" -eq 0 ] && [ "$HTTP_STATUS" = 200 ] && [ -n "$(json_value sha256)" ]; then
        receipt_from_json
        return 0
    fi
    if [ "$CURL_RC" -ne 0 ]; then
        why=$(curl_reason)
    else
        why="HTTP $HTTP_STATUS: $(server_detail)"
    fi
    if [ -z "$ARCHIVE_ID" ] || [ -z "$REMOTE_SHA256" ]; then
        die 1 "the upload is complete, but its receipt could not be read ($why);" \
            "ask support whether the archive of ${FILE##*/} arrived"
    fi
    info "note: the full receipt could not be read ($why); the server's answer to the" \
        "last chunk names the archive."
}

print_receipt() {
    if [ -n "$ARCHIVE_TICKET" ]; then
        printf 'Uploaded archive %s to ticket %s\n' "$ARCHIVE_ID" "$ARCHIVE_TICKET"
    else
        printf 'Uploaded archive %s\n' "$ARCHIVE_ID"
    fi
    printf '  name:   %s\n' "$ARCHIVE_NAME"
    printf '  size:   %s bytes\n' "$ARCHIVE_SIZE"
    [ -z "$ARCHIVE_TIME" ] || printf '  time:   %s\n' "$ARCHIVE_TIME"
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
        sum=$(cat "$HASH_OUT")
        rm -f "$HASH_OUT"
        HASH_OUT=
    else
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
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    state_init
    remove_stale_files
    if [ -z "$RESUME" ] && already_uploaded; then
        confirm_again
    fi
    if [ -z "$SINGLE" ]; then
        resume_candidate
    fi
    # A resumed upload already holds its attempt: the token may have none left.
    if [ -z "$UPLOAD_URL" ]; then
        check_token
        if [ -z "$SINGLE" ] && ! detect_tus; then
            info "The server does not take resumable uploads (no tus 1.0.0 in its answer to" \
                "OPTIONS); sending the file in one request."
            SINGLE=1
        fi
    fi
    start_local_hash
    if [ -n "$SINGLE" ]; then
        upload_simple
    else
        upload_tus
    fi
    verify_hash
    state_save_done
}

main "$@"
