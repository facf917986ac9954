// The public upload page: check the token, then send the chosen files one after another.
//
// The token comes from the link's #token= fragment, which browsers never send to the
// server, so it stays out of server and proxy logs. Every file goes through sendFile(), the
// one place that speaks the upload protocol: tus 1.0.0, in chunks, resuming after a dropped
// connection and, through a fingerprint in localStorage, after a reload.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var CHECK_URL = form.getAttribute("data-check-url");
  var UPLOAD_URL = form.getAttribute("data-upload-url");
  var MAX_SIZE = Number(form.getAttribute("data-max-size"));
  // Abort when nothing has moved for this long, including while the server stores a large
  // file after the last byte was sent (the console client's default too).
  var STALL_MS = 600 * 1000;
  var NOT_COMPLETED = "The upload did not complete — check your connection and try again.";
  var NEW_LINK = " Ask support for a new upload link.";

  var tokenInput = document.getElementById("token");
  var tokenStatus = document.getElementById("token-status");
  var fileInput = document.getElementById("files");
  var dropZone = document.getElementById("drop-zone");
  var checkButton = document.getElementById("check-token");
  var startButton = document.getElementById("start");
  var cancelButton = document.getElementById("cancel");
  var list = document.getElementById("uploads");
  var template = document.getElementById("upload-item");

  var items = [];        // {file, element, state}, in the order they were added
  var current = null;    // {item, cancel} of the upload in progress
  var cancelled = false;
  // What the last token check found, one of: "empty", "checking", "ready" (a new upload is
  // possible), "resumable" (only stopped uploads can be finished), "refused", "unchecked"
  // (no answer: Upload stays possible, as every file is checked again first).
  var tokenCheck = { kind: "empty", state: null };
  var checks = 0;        // the number of the latest check: an older answer is ignored

  // --- formatting ------------------------------------------------------------------------

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

  // --- the token -------------------------------------------------------------------------

  function tokenFromFragment() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    return (params.get("token") || "").trim();
  }

  // One message at a time: each state replaces the one before.
  function showTokenState(kind, text) {
    tokenStatus.className = text ? "mt-2 alert alert-" + kind + " py-2 mb-0" : "mt-2";
    tokenStatus.textContent = text;
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

  // The token's state as {kind, text}: what the page shows and allows.
  function judgeToken(status, body, retryAfter) {
    var resumable = (body && Array.isArray(body.resumable)) ? body.resumable : [];
    // The one being continued right now is not offered again.
    var sending = current && current.item.file;
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

  // Resolves to the token's state (the API's answer, with `kind`) or null without one.
  function checkToken() {
    var value = tokenInput.value.trim();
    var number = checks += 1;
    // The console commands on the page carry the same token.
    document.querySelectorAll(".token-slot").forEach(function (slot) {
      slot.textContent = value || "TOKEN";
    });
    if (!value) {
      tokenCheck = { kind: "empty", state: null };
      showTokenState("", "");
      judgeItems();
      return Promise.resolve(null);
    }
    tokenCheck = { kind: "checking", state: null };
    showTokenState("secondary", "Checking the token …");
    updateButtons();
    return fetch(CHECK_URL + encodeURIComponent(value), {
      cache: "no-store", headers: { "Accept": "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { judged: judgeToken(response.status, body,
          response.headers.get("Retry-After")), body: response.status === 200 ? body : null };
      });
    }, function () {
      return { judged: judgeToken(0, null), body: null };
    }).then(function (answer) {
      if (number !== checks) { return tokenCheck.state; }  // a newer check is under way
      tokenCheck = { kind: answer.judged.kind, state: answer.body };
      showTokenState(answer.judged.alert, answer.judged.text);
      judgeItems();
      return tokenCheck.state;
    });
  }

  // Whether this token may send the file now: any file while it can start uploads, or
  // only the files this browser had started once it can just finish stopped ones.
  function canSend(item) {
    // Without a token Upload stays on, to say that one is needed (start()).
    if (["ready", "unchecked", "empty"].indexOf(tokenCheck.kind) >= 0) { return true; }
    return tokenCheck.kind === "resumable"
      && Boolean(loadEntry(item.file, tokenInput.value.trim()));
  }

  function stoppedUploadOf(file) {
    var uploads = (tokenCheck.state && tokenCheck.state.resumable) || [];
    return uploads.find(function (upload) {
      return upload.name === file.name && upload.size === file.size;
    });
  }

  // After each check: a file the token cannot send says why, once the token is known to
  // allow only finishing stopped uploads; it is ready again when the token allows it.
  function judgeItems() {
    items.forEach(function (item) {
      if (item.state !== "ready" && item.state !== "blocked") { return; }
      if (tokenCheck.kind !== "resumable" || canSend(item)) {
        if (item.state === "blocked") { setResult(item, "body", ""); }
        setState(item, "ready");
        setProgress(item, 0, readyText(item));
        return;
      }
      setState(item, "blocked");
      setProgress(item, 0, "Not sent");
      setResult(item, "danger", stoppedUploadOf(item.file)
        ? "This browser cannot continue that upload of " + item.file.name + ": it was "
          + "started in another browser, or this browser's data was cleared. Continue it "
          + "there, or ask support for a new upload link."
        : "Not sent: this link can only finish the stopped upload, not start a new one. "
          + "Choose that file, or ask support for a new upload link to send other files.");
    });
    updateButtons();
  }

  function readyText(item) {
    var entry = loadEntry(item.file, tokenInput.value.trim());
    var stopped = stoppedUploadOf(item.file);
    if (!entry) {
      // Its stopped upload was started elsewhere: this one starts afresh (a new attempt).
      return stopped ? "Ready to upload: starts afresh, as this browser has no record of the "
        + "stopped upload" : "Ready to upload";
    }
    return stopped ? "Ready to upload: continues the upload stopped at " + stoppedAt(stopped)
      : "Ready to upload: continues an earlier upload of this file";
  }

  // --- the list of files -----------------------------------------------------------------

  function part(item, name) {
    return item.element.querySelector("." + name);
  }

  function setState(item, state) {
    item.state = state;
    item.element.setAttribute("data-state", state);
    part(item, "upload-retry").hidden = !(state === "failed" || state === "cancelled");
    part(item, "upload-remove").hidden = state === "uploading";
    updateButtons();
  }

  function setProgress(item, percent, text) {
    item.percent = percent;
    var bar = part(item, "progress-bar");
    // Set through the CSSOM, which the Content-Security-Policy allows (no style attribute).
    bar.style.width = percent + "%";
    part(item, "progress").setAttribute("aria-valuenow", String(percent));
    part(item, "upload-progress").textContent = text;
  }

  function setResult(item, kind, text) {
    var result = part(item, "upload-result");
    result.className = "upload-result mt-1 text-" + kind + "-emphasis";
    result.textContent = text;
    var bar = part(item, "progress-bar");
    bar.classList.toggle("bg-success", kind === "success");
    bar.classList.toggle("bg-danger", kind === "danger");
    bar.classList.toggle("bg-warning", kind === "warning");
  }

  function addFiles(files) {
    Array.prototype.forEach.call(files, function (file) {
      var element = template.content.firstElementChild.cloneNode(true);
      var item = { file: file, element: element, state: "ready", allSent: false };
      part(item, "upload-name").textContent = file.name;
      part(item, "upload-size").textContent = formatSize(file.size);
      part(item, "progress").setAttribute("aria-label", "Upload progress of " + file.name);
      part(item, "upload-retry").addEventListener("click", function () { retry(item); });
      part(item, "upload-remove").addEventListener("click", function () { remove(item); });
      part(item, "receipt-copy").addEventListener("click", function (event) {
        copyReceipt(item, event.currentTarget);
      });
      items.push(item);
      list.appendChild(element);
      setState(item, "ready");
      setProgress(item, 0, readyText(item));
      // Refused here already: a file the server would refuse is not sent at all.
      if (file.size === 0) {
        setState(item, "refused");
        setResult(item, "danger", "This file is empty.");
      } else if (MAX_SIZE && file.size > MAX_SIZE) {
        setState(item, "refused");
        setResult(item, "danger", tooLargeText());
      }
    });
    judgeItems();
  }

  function tooLargeText() {
    return "This file is larger than the largest upload accepted (" + formatSize(MAX_SIZE)
      + "). Split it, or ask support for another way.";
  }

  function remove(item) {
    items.splice(items.indexOf(item), 1);
    item.element.remove();
    updateButtons();
  }

  function retry(item) {
    setResult(item, "body", "");
    item.allSent = false;
    setState(item, "ready");
    setProgress(item, 0, readyText(item));
    if (!current) { start(); }
  }

  // Upload only when a file is ready and the token, as last checked, may send it.
  function updateButtons() {
    var ready = items.some(function (item) { return item.state === "ready" && canSend(item); });
    startButton.disabled = Boolean(current) || !ready || tokenCheck.kind === "checking";
    cancelButton.hidden = !current;
    // One token for the whole run: it cannot be changed half-way.
    tokenInput.readOnly = Boolean(current);
    checkButton.disabled = Boolean(current) || tokenCheck.kind === "checking";
  }

  // --- resumable uploads (tus 1.0.0) ----------------------------------------------------

  var TUS_VERSION = "1.0.0";
  var DEFAULT_CHUNK = 8 * 1024 * 1024;
  // Waits before asking the server again after a dropped chunk (ms); the budget starts
  // afresh after every chunk that got through.
  var DEFAULT_DELAYS = "1000 2000 4000 8000 16000 30000";
  var STORE_PREFIX = "collector.upload.";
  var STORE_MS = 8 * 24 * 3600 * 1000;  // the server keeps an unfinished upload 7 days

  // The key of a file in localStorage: a hash of token, name, size and date, so the token
  // itself is not written down; the entry repeats name, size and date to rule out a clash.
  function fingerprint(file, token) {
    var text = [token, file.name, file.size, file.lastModified].join("\n");
    var one = 0x811c9dc5;
    var two = 0x01000193;
    for (var i = 0; i < text.length; i += 1) {
      one = Math.imul(one ^ text.charCodeAt(i), 0x01000193) >>> 0;
      two = Math.imul(two ^ text.charCodeAt(i), 0x5bd1e995) >>> 0;
    }
    return STORE_PREFIX + one.toString(16) + two.toString(16);
  }

  function storage() {
    try { return window.localStorage; } catch (e) { return null; }  // disabled by the user
  }

  function loadEntry(file, token) {
    var store = storage();
    var entry = null;
    try { entry = store && JSON.parse(store.getItem(fingerprint(file, token)) || "null"); }
    catch (e) { entry = null; }
    if (entry && entry.url && entry.name === file.name && entry.size === file.size
        && entry.lastModified === file.lastModified) { return entry; }
    return null;
  }

  function saveEntry(file, token, url) {
    var store = storage();
    try {
      if (store) {
        store.setItem(fingerprint(file, token), JSON.stringify({
          url: url, name: file.name, size: file.size, lastModified: file.lastModified,
          saved: Date.now() }));
      }
    } catch (e) { /* full or disabled: the upload still runs, it only cannot resume */ }
  }

  function dropEntry(file, token) {
    var store = storage();
    try { if (store) { store.removeItem(fingerprint(file, token)); } } catch (e) { /* gone */ }
  }

  // Entries older than the server keeps an unfinished upload are of no use any more.
  function pruneEntries() {
    var store = storage();
    if (!store) { return; }
    try {
      for (var i = store.length - 1; i >= 0; i -= 1) {
        var key = store.key(i);
        if (key && key.indexOf(STORE_PREFIX) === 0) {
          var entry = null;
          try { entry = JSON.parse(store.getItem(key)); } catch (e) { entry = null; }
          if (!entry || !(Date.now() - entry.saved < STORE_MS)) { store.removeItem(key); }
        }
      }
    } catch (e) { /* storage refused: nothing to prune */ }
  }

  function base64(text) {
    var bytes = new TextEncoder().encode(text);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) { binary += String.fromCharCode(bytes[i]); }
    return window.btoa(binary);
  }

  function metadata(file) {
    var pairs = ["filename " + base64(file.name)];
    if (file.type) { pairs.push("filetype " + base64(file.type)); }
    return pairs.join(",");
  }

  // Sends one file over tus; the only function that knows the protocol. `on` has
  // progress(sentBytes), resumed(offset), retrying(seconds) and done(outcome), called once,
  // where outcome is {status, body, retryAfter} for an answer of the server (200 with the
  // receipt when stored) or {failure: "network" | "timeout" | "cancelled"} when there was
  // none; with `resumable` when a Retry can continue the upload. Returns a function that
  // cancels.
  function sendFile(file, token, on) {
    var chunkSize = Number(form.getAttribute("data-chunk-size")) || DEFAULT_CHUNK;
    var delays = (form.getAttribute("data-retry-delays") || DEFAULT_DELAYS).trim()
      .split(/\s+/).map(Number);
    var url = null;         // the upload's address, once created (or found again)
    var offset = 0;         // what the server has
    var failures = 0;       // retries since the last chunk that got through
    var restarted = false;  // a 404/410 starts a new upload once
    var xhr = null;
    var timer = null;
    var finished = false;
    var cancelled = false;
    var lastMove = Date.now();
    var stalled = false;
    var retryAfter = null;  // the last answer's Retry-After (429, 503)
    var stored = false;     // the file is an archive: Cancel has nothing left to stop
    var watchdog = window.setInterval(function () {
      if (xhr && Date.now() - lastMove > STALL_MS) { stalled = true; xhr.abort(); }
    }, 5000);

    function finish(outcome) {
      if (finished) { return; }
      finished = true;
      window.clearInterval(watchdog);
      window.clearTimeout(timer);
      on.done(outcome);
    }

    // One request; then(status, request, body) with status 0 when there was no answer.
    function call(method, target, headers, body, then) {
      var request = new XMLHttpRequest();
      xhr = request;
      lastMove = Date.now();
      stalled = false;
      request.open(method, target);
      request.setRequestHeader("Tus-Resumable", TUS_VERSION);
      request.setRequestHeader("Upload-Token", token);
      request.setRequestHeader("Accept", "application/json");
      Object.keys(headers).forEach(function (name) {
        request.setRequestHeader(name, headers[name]);
      });
      if (body) {
        var base = offset;
        request.upload.onprogress = function (event) {
          lastMove = Date.now();
          on.progress(Math.min(file.size, base + event.loaded));
        };
      }
      function settle(answered) {
        if (xhr !== request || cancelled) { return; }  // cancelled meanwhile
        xhr = null;
        var parsed = {};
        if (answered && request.responseText) {
          try { parsed = JSON.parse(request.responseText); } catch (e) { /* a proxy's page */ }
        }
        retryAfter = answered ? request.getResponseHeader("Retry-After") : null;
        then(answered ? request.status : 0, request, parsed);
      }
      request.onload = function () { settle(true); };
      request.onerror = function () { settle(false); };
      request.onabort = function () { settle(false); };
      request.ontimeout = function () { settle(false); };
      request.send(body || null);
    }

    function answer(status, body) {
      return status ? { status: status, body: body, retryAfter: retryAfter,
        resumable: Boolean(url) }
        : { failure: stalled ? "timeout" : "network", resumable: Boolean(url) };
    }

    // No answer, a conflict or a server error: wait, then ask the server where it stands.
    function later(status, body, then) {
      if (failures >= delays.length) { finish(answer(status, body)); return; }
      var delay = delays[failures];
      failures += 1;
      on.retrying(delay / 1000);
      timer = window.setTimeout(then || locate, delay);
    }

    function retriable(status) {
      return status === 0 || status === 409 || (status >= 500 && status !== 507);
    }

    function restart(status, body) {
      dropEntry(file, token);
      url = null;
      if (restarted) { finish(answer(status, body)); return; }
      restarted = true;
      create();
    }

    function create() {
      offset = 0;
      call("POST", UPLOAD_URL, {
        "Upload-Length": String(file.size),
        "Upload-Metadata": metadata(file),
      }, null, function (status, request, body) {
        var location = status === 201 && request.getResponseHeader("Location");
        if (!location) {
          // Not retried: a creation whose answer was lost may have reserved an attempt.
          finish(answer(status === 201 ? 502 : status, body));
          return;
        }
        url = new URL(location, UPLOAD_URL).href;
        saveEntry(file, token, url);
        offset = Number(request.getResponseHeader("Upload-Offset")) || 0;
        patch();
      });
    }

    // Stored as archive `id`: tus's last answer has no body, so the receipt is asked with
    // GET on the upload; if that fails, the receipt's headers of `answer` are what is shown.
    function receipt(answer, id, earlier) {
      stored = true;
      dropEntry(file, token);
      var fallback = { id: Number(id), name: file.name,
        size: Number(answer.getResponseHeader("Upload-Receipt-Size")) || file.size,
        sha256: answer.getResponseHeader("Upload-Receipt-Sha256") || undefined,
        md5: answer.getResponseHeader("Upload-Receipt-Md5") || undefined };
      call("GET", url, {}, null, function (status, request, body) {
        var complete = status === 200 && body && String(body.id) === String(id);
        finish({ status: 200, earlier: earlier, body: complete ? body : fallback });
      });
    }

    // HEAD: the server's offset, then go on from there.
    function locate(first) {
      call("HEAD", url, {}, null, function (status, request) {
        var length = Number(request.getResponseHeader("Upload-Length"));
        var known = Number(request.getResponseHeader("Upload-Offset"));
        if (status === 200 && length === file.size && known >= 0 && known <= file.size) {
          var archive = request.getResponseHeader("Upload-Archive-Id");
          offset = known;
          if (archive) {  // stored already; only the answer to the last chunk was lost
            receipt(request, archive, true);
            return;
          }
          if (first) { on.resumed(offset); }
          on.progress(offset);
          patch();
        } else if (first && status !== 0 && !retriable(status)) {
          // The stored upload is gone (expired, finished, another ticket): a new one.
          dropEntry(file, token);
          url = null;
          create();
        } else if (status === 404 || status === 410 || status === 200) {
          restart(status, {});  // gone, or not this file's upload any more
        } else if (retriable(status)) {
          later(status, {}, function () { locate(first); });
        } else {
          finish({ status: status, body: { detail: "the server refused to continue this "
            + "upload" }, resumable: true });
        }
      });
    }

    function patch() {
      var end = Math.min(offset + chunkSize, file.size);
      call("PATCH", url, {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": String(offset),
      }, file.slice(offset, end), function (status, request, body) {
        var moved = Number(request.getResponseHeader("Upload-Offset"));
        var archive = status === 204 && request.getResponseHeader("Upload-Archive-Id");
        if (archive && moved === file.size) {  // the last chunk: the file is an archive
          offset = moved;
          on.progress(offset);
          receipt(request, archive, false);
        } else if (status === 204 && moved > offset && moved <= file.size) {
          offset = moved;
          failures = 0;
          on.progress(offset);
          patch();
        } else if (status === 460) {
          later(status, body, patch);  // the chunk arrived damaged: the same chunk again
        } else if (status === 404 || status === 410) {
          restart(status, body);
        } else if (retriable(status) || status === 204) {
          later(status, body);
        } else {
          finish(answer(status, body));
        }
      });
    }

    var entry = loadEntry(file, token);
    if (entry) {
      url = entry.url;
      locate(true);
    } else {
      create();
    }

    return function cancel() {
      if (finished || cancelled || stored) { return; }
      cancelled = true;
      window.clearTimeout(timer);
      var request = xhr;
      xhr = null;
      if (request) { request.abort(); }
      if (!url) { finish({ failure: "cancelled", terminated: false }); return; }
      // Termination: the server forgets the bytes and gives the attempt back.
      dropEntry(file, token);
      var terminate = new XMLHttpRequest();
      terminate.open("DELETE", url);
      terminate.setRequestHeader("Tus-Resumable", TUS_VERSION);
      terminate.setRequestHeader("Upload-Token", token);
      terminate.onload = function () {
        finish({ failure: "cancelled", terminated: terminate.status === 204 });
      };
      terminate.onerror = function () { finish({ failure: "cancelled", terminated: false }); };
      terminate.send();
    };
  }

  // --- the queue -------------------------------------------------------------------------

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

  // What the customer keeps: the upload's receipt, shown and copyable.
  function showReceipt(item, body) {
    var rows = [
      ["Ticket", body.ticket],
      ["File", body.name],
      ["Size", body.size === undefined ? undefined
        : formatSize(body.size) + " (" + body.size + " bytes)"],
      ["SHA-256", body.sha256],
      ["Stored", body.time_create && receiptTime(body.time_create)],
      ["Archive ID", body.id],
    ].filter(function (row) { return row[1] !== undefined && row[1] !== null && row[1] !== ""; });
    var receipt = part(item, "upload-receipt");
    var list = receipt.querySelector("dl");
    list.textContent = "";
    rows.forEach(function (row) {
      var term = document.createElement("dt");
      term.className = "col-sm-3";
      term.textContent = row[0];
      var value = document.createElement("dd");
      value.className = "col-sm-9 mb-1 text-break receipt-" + row[0].toLowerCase()
        .replace(/[^a-z0-9]+/g, "-");
      value.textContent = String(row[1]);
      list.appendChild(term);
      list.appendChild(value);
    });
    item.receiptText = rows.map(function (row) { return row[0] + ": " + row[1]; })
      .join("\n");
    receipt.hidden = false;
  }

  function copyReceipt(item, button) {
    var label = button.textContent;
    function done(message) {
      button.textContent = message;
      window.setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(item.receiptText || "").then(function () { done("Copied"); },
        function () { done("Copy failed"); });
    } else {
      // Plain http on another host: no clipboard API; select the receipt to copy by hand.
      var range = document.createRange();
      range.selectNodeContents(part(item, "upload-receipt").querySelector("dl"));
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done("Selected: press Ctrl+C");
    }
  }

  function showOutcome(item, outcome) {
    var body = outcome.body || {};
    if (outcome.status === 200 || outcome.status === 201) {
      setState(item, "done");
      setProgress(item, 100, "100 %");
      if (outcome.earlier) {
        setResult(item, "success", "Already stored by an earlier upload of this file "
          + "(archive " + body.id + ").");
      } else {
        setResult(item, "success", "Uploaded: " + formatSize(body.size) + " (" + body.size
          + " bytes), sha256 " + body.sha256);
      }
      part(item, "upload-result").setAttribute("data-sha256", body.sha256 || "");
      showReceipt(item, body);
      return;
    }
    part(item, "upload-progress").textContent = outcome.failure
      ? "Stopped at " + item.percent + " %" : "";
    if (outcome.failure === "cancelled") {
      setState(item, "cancelled");
      if (item.allSent) {
        setResult(item, "warning",
          "Cancelled after the whole file was sent: the server may still store it.");
      } else if (outcome.terminated) {
        setResult(item, "warning", "Cancelled: the partly sent file was removed from the "
          + "server and the upload attempt was given back.");
      } else {
        setResult(item, "warning", "Cancelled: the file was not stored and no attempt was used.");
      }
    } else if (outcome.failure) {
      setState(item, "failed");
      setResult(item, "danger", outcome.resumable ? NOT_COMPLETED + " Retry continues where "
        + "it stopped." : NOT_COMPLETED);
    } else {
      var refusal = refusalOf(outcome);
      setState(item, refusal.again ? "failed" : "refused");
      setResult(item, "danger", refusal.text);
    }
  }

  // The server's answer to an upload, in plain words: its `detail` is written for
  // developers and console users (field names, codes), so it is never shown as such.
  // `again`: trying later may work, so the item offers Retry.
  function refusalOf(outcome) {
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
        + formatSize(MAX_SIZE) + ", counting what the stopped uploads of this link hold. "
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

  function finishQueue(recheck) {
    current = null;
    updateButtons();
    if (recheck) { checkToken(); }  // show the attempts that are left
  }

  // The token is checked again before every file: a token used up or closed meanwhile
  // must not cost a long upload only to be refused at its end.
  function next() {
    var item = items.find(function (candidate) {
      return candidate.state === "ready" && canSend(candidate);
    });
    if (!item || cancelled) { finishQueue(true); return; }
    current = { item: item, cancel: function () { /* nothing is sent yet */ } };
    setState(item, "uploading");
    setProgress(item, 0, "Waiting");
    checkToken().then(function () {
      if (cancelled || !canSend(item)) {
        // Cancelled, or the token refused meanwhile: the message above says why, once.
        setState(item, "ready");
        current = null;
        judgeItems();
        if (item.state === "ready" && !cancelled) { setProgress(item, 0, "Not sent"); }
        finishQueue(false);
      } else {
        // A token without attempts left can still finish an upload it already started.
        send(item);
      }
    });
  }

  function send(item) {
    var started = Date.now();
    var samples = [];
    var total = item.file.size;
    setProgress(item, 0, "Starting …");
    current.cancel = sendFile(item.file, tokenInput.value.trim(), {
      progress: function (sent) {
        item.allSent = sent >= total;
        var progress = progressText(sent, total, started, samples);
        setProgress(item, progress[0], progress[1]);
      },
      resumed: function (offset) {
        var percent = Math.floor(100 * offset / total);
        samples.length = 0;
        samples.push([Date.now(), offset]);
        setProgress(item, percent, "Resuming from " + percent + " % …");
        setResult(item, "body", "Resuming from " + percent + " %: " + formatSize(offset)
          + " were already on the server.");
      },
      retrying: function (seconds) {
        samples.length = 0;
        part(item, "upload-progress").textContent = "At " + item.percent + " %: the upload was "
          + "interrupted, trying again in " + formatDuration(seconds) + " …";
      },
      done: function (outcome) {
        showOutcome(item, outcome);
        next();
      },
    });
  }

  function start() {
    if (current) { return; }
    if (!tokenInput.value.trim()) {
      showTokenState("warning", "Enter the upload token support gave you.");
      tokenInput.focus();
      return;
    }
    cancelled = false;
    next();
  }

  // --- events ----------------------------------------------------------------------------

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    start();
  });
  cancelButton.addEventListener("click", function () {
    if (!current) { return; }
    cancelled = true;
    current.cancel();
  });
  checkButton.addEventListener("click", checkToken);
  tokenInput.addEventListener("change", checkToken);

  fileInput.addEventListener("change", function () {
    addFiles(fileInput.files);
    fileInput.value = "";  // the same file can be chosen again
  });
  dropZone.addEventListener("dragover", function (event) {
    event.preventDefault();
    dropZone.classList.add("dragover");
  });
  dropZone.addEventListener("dragleave", function () { dropZone.classList.remove("dragover"); });
  dropZone.addEventListener("drop", function (event) {
    event.preventDefault();
    dropZone.classList.remove("dragover");
    addFiles(event.dataTransfer.files);
  });
  // A file dropped next to the zone must not replace the page (and a running upload).
  window.addEventListener("dragover", function (event) { event.preventDefault(); });
  window.addEventListener("drop", function (event) { event.preventDefault(); });

  window.addEventListener("beforeunload", function (event) {
    if (!current) { return undefined; }
    event.preventDefault();
    event.returnValue = "An upload is running; leaving the page pauses it (choose the same "
      + "file again here to continue).";
    return event.returnValue;
  });

  window.addEventListener("hashchange", function () {
    var token = tokenFromFragment();
    if (token) { tokenInput.value = token; checkToken(); }
  });
  tokenInput.value = tokenFromFragment() || tokenInput.value;
  // The limit in the same units as every other size on the page.
  document.querySelectorAll(".max-size").forEach(function (element) {
    element.textContent = formatSize(MAX_SIZE);
  });
  pruneEntries();
  checkToken();
}());
