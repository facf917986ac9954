// The upload page's words: sizes, durations, and every message a person reads, in plain
// sentences. The API's `detail` is written for developers and console users (field paths,
// codes), so it is never shown: each answer is told from its status and `reason`.
(function () {
  "use strict";

  var NOT_COMPLETED = "The upload did not complete — check your connection and try again.";
  var NEW_LINK = " Ask support for a new upload link.";

  // Binary units, as the staff pages show sizes: the limit 4294967296 is "4 GiB".
  function formatSize(bytes) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var size = bytes;
    var unit = 0;
    while (Math.abs(size) >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    return unit === 0 ? size + " B"
      : size.toFixed(1).replace(/\.0$/, "") + " " + units[unit];
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return seconds + " s"; }
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) { return minutes + " min " + (seconds % 60) + " s"; }
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function retryAfterText(seconds) {
    seconds = Number(seconds);
    if (!(seconds > 0)) { return "in a few minutes"; }
    return seconds < 90 ? "in " + plural(Math.ceil(seconds), "second")
      : "in " + plural(Math.ceil(seconds / 60), "minute");
  }

  function dateText(iso) {
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  // Why a ticket's token cannot start an upload, for a person (the API's `reason`).
  function refusalText(state) {
    if (state.reason === "ticket_resolved") {
      return "Ticket " + state.ticket + " is closed and takes no more uploads." + NEW_LINK;
    }
    if (state.reason === "token_expired") {
      return "This upload link expired" + (state.expires_at ? " on "
        + dateText(state.expires_at) : "") + "." + NEW_LINK;
    }
    if (state.reason === "no_attempts") {
      return "This upload link has been used for as many files as it allows." + NEW_LINK;
    }
    return "This upload link cannot be used." + NEW_LINK;
  }

  function stoppedAt(upload) {
    return upload.size ? Math.floor(100 * upload.received / upload.size) + " %"
      : formatSize(upload.received);
  }

  // "An upload of big300.bin stopped at 41 %. Choose the same file to continue."
  function resumableText(uploads) {
    if (uploads.length === 1) {
      return "An upload of " + uploads[0].name + " stopped at " + stoppedAt(uploads[0])
        + ". Choose the same file to continue.";
    }
    var names = uploads.map(function (upload) {
      return upload.name + " (" + stoppedAt(upload) + ")";
    });
    return "Uploads of " + names.slice(0, -1).join(", ") + " and " + names[names.length - 1]
      + " stopped part-way. Choose the same files to continue.";
  }

  // The token check's answer as {kind, alert, text}: what the page shows and allows.
  // `sending`: the file being sent now, if any; its stopped upload is not offered again.
  function judgeToken(status, body, retryAfter, sending) {
    var resumable = (body && Array.isArray(body.resumable)) ? body.resumable : [];
    var others = resumable.filter(function (upload) {
      return !(sending && upload.name === sending.name && upload.size === sending.size);
    });
    if (status === 200 && body.valid) {
      var expiry = body.expires_at ? "valid until " + dateText(body.expires_at)
        : "does not expire";
      var text = "Ticket " + body.ticket + ": " + plural(body.attempts, "upload attempt")
        + " left, " + expiry + ".";
      return { kind: "ready", alert: "success",
        text: others.length ? text + " " + resumableText(others) : text };
    }
    if (status === 200 && resumable.length) {
      // The stopped upload holds the ticket's last attempt: it can still be finished.
      return { kind: "resumable", alert: "info", text: others.length ? resumableText(others)
        : "Continuing the stopped upload of " + sending.name + "." };
    }
    if (status === 200) { return { kind: "refused", alert: "danger", text: refusalText(body) }; }
    if (status === 404) {
      return { kind: "refused", alert: "danger", text: "This upload token is not known: "
        + "check that you copied the whole link." + NEW_LINK };
    }
    if (status === 429) {
      return { kind: "refused", alert: "warning", text: "Too many unknown upload tokens "
        + "were tried from your network. Try again " + retryAfterText(retryAfter) + "." };
    }
    return { kind: "unchecked", alert: "warning", text: "The token could not be checked: "
      + "the server did not answer. Check your connection, then press Check." };
  }

  function tooLargeText(maxSize) {
    return "This file is larger than the largest upload accepted (" + formatSize(maxSize)
      + "). Split it, or ask support for another way.";
  }

  function progressText(sent, total, started, samples) {
    var now = Date.now();
    samples.push([now, sent]);
    // Speed over the last few seconds: a flaky link's speed changes, and so does time left.
    while (samples.length > 2 && now - samples[0][0] > 5000) { samples.shift(); }
    var first = samples[0];
    var seconds = (now - first[0]) / 1000;
    var speed = seconds > 0.2 ? (sent - first[1]) / seconds : 0;
    var percent = total ? Math.floor(100 * sent / total) : 0;
    var text = percent + " %";
    if (sent >= total) {
      return [100, "100 % sent in " + formatDuration((now - started) / 1000)
        + "; the server is storing and checking the file …"];
    }
    if (speed > 0) {
      text += " · " + formatSize(speed) + "/s · " + formatDuration((total - sent) / speed)
        + " left";
    }
    return [percent, text];
  }

  function receiptTime(iso) {
    var date = new Date(iso);
    return isNaN(date.getTime()) ? String(iso || "")
      : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  // The server's answer to an upload, in plain words: its `detail` is written for
  // developers and console users (field names, codes), so it is never shown as such.
  // `again`: trying later may work, so the item offers Retry.
  function refusalOf(outcome, maxSize) {
    var status = outcome.status;
    var later = retryAfterText(outcome.retryAfter);
    var texts = {
      400: [false, "The server could not accept this file's details. Try again; if it keeps "
        + "failing, tell support."],
      401: [false, "The upload token is missing. Enter the token support gave you."],
      403: [false, "This upload token is not valid: check that you copied the whole link."
        + NEW_LINK],
      404: [true, "The server no longer has this upload. Retry starts it again."],
      409: [true, "This upload clashes with another one of the same link (in another tab "
        + "or window?), or the link holds too many stopped uploads. Let the other one finish, "
        + "then press Retry."],
      410: [true, "This upload expired on the server. Retry starts it again."],
      413: [false, "The server will not take this file now: the largest accepted is "
        + formatSize(maxSize) + ", counting what the stopped uploads of this link hold. "
        + "Finish them first, or ask support for another way."],
      423: [false, "Not stored: this upload link can no longer be used (the message above "
        + "says why)."],
      429: [true, "Too many requests came from your network. Try again " + later + "."],
      460: [true, "Parts of the file kept arriving damaged. Check your connection and try "
        + "again."],
      507: [true, "The server has no room for this file right now. Try again later; if it "
        + "keeps failing, tell support."],
    };
    var known = texts[status];
    if (known) { return { again: known[0], text: known[1] }; }
    return { again: true, text: "The server could not store the file. Try again in a few "
      + "minutes; if it keeps failing, tell support." };
  }

  function storedText(body, earlier) {
    return earlier ? "Already stored by an earlier upload of this file (archive " + body.id
      + ")." : "Uploaded: " + formatSize(body.size) + " (" + body.size + " bytes), sha256 "
      + body.sha256;
  }

  // After Cancel: whether the server may still store the file, or gave the attempt back.
  function cancelledText(allSent, terminated) {
    if (allSent) {
      return "Cancelled after the whole file was sent: the server may still store it.";
    }
    return terminated ? "Cancelled: the partly sent file was removed from the server and the "
      + "upload attempt was given back."
      : "Cancelled: the file was not stored and no attempt was used.";
  }

  // Why a file is not sent while the token can only finish stopped uploads: it is another
  // file, or (`startedElsewhere`) its stopped upload is not known to this browser.
  function blockedText(name, startedElsewhere) {
    return startedElsewhere
      ? "This browser cannot continue that upload of " + name + ": it was started in "
        + "another browser, or this browser's data was cleared. Continue it there, or ask "
        + "support for a new upload link."
      : "Not sent: this link can only finish the stopped upload, not start a new one. "
        + "Choose that file, or ask support for a new upload link to send other files.";
  }

  // The receipt's rows, [label, value], for what the server said (missing ones left out).
  function receiptRows(body) {
    return [
      ["Ticket", body.ticket],
      ["File", body.name],
      ["Size", body.size === undefined ? undefined
        : formatSize(body.size) + " (" + body.size + " bytes)"],
      ["SHA-256", body.sha256],
      ["Stored", body.time_create && receiptTime(body.time_create)],
      ["Archive ID", body.id],
    ].filter(function (row) { return row[1] !== undefined && row[1] !== null && row[1] !== ""; });
  }

  window.UploadPage = window.UploadPage || {};
  window.UploadPage.words = {
    NOT_COMPLETED: NOT_COMPLETED, formatSize: formatSize, formatDuration: formatDuration,
    plural: plural, retryAfterText: retryAfterText, stoppedAt: stoppedAt,
    judgeToken: judgeToken, tooLargeText: tooLargeText, progressText: progressText,
    refusalOf: refusalOf, blockedText: blockedText, receiptRows: receiptRows,
    storedText: storedText, cancelledText: cancelledText,
  };
}());
