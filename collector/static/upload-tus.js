// The upload page's one speaker of the upload protocol: tus 1.0.0, in chunks, resuming
// after a dropped connection and, through a fingerprint in localStorage, after a reload.
(function () {
  "use strict";

  // Abort when nothing has moved for this long, including while the server stores a large
  // file after the last byte was sent (the console client's default too).
  var STALL_MS = 600 * 1000;
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

  // Sends one file over tus; the only function that knows the protocol. `options` has
  // uploadUrl (the collection's), chunkSize and retryDelays (ms, space-separated). `on` has
  // progress(sentBytes), resumed(offset), retrying(seconds) and done(outcome), called once,
  // where outcome is {status, body, retryAfter} for an answer of the server (200 with the
  // receipt when stored) or {failure: "network" | "timeout" | "cancelled"} when there was
  // none; with `resumable` when a Retry can continue the upload. Returns a function that
  // cancels.
  function sendFile(file, token, options, on) {
    var UPLOAD_URL = options.uploadUrl;
    var chunkSize = Number(options.chunkSize) || DEFAULT_CHUNK;
    var delays = (options.retryDelays || DEFAULT_DELAYS).trim().split(/\s+/).map(Number);
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

  window.UploadPage = window.UploadPage || {};
  window.UploadPage.tus = {
    sendFile: sendFile, loadEntry: loadEntry, pruneEntries: pruneEntries,
  };
}());
