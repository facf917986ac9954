// The public upload page: check the token, then send the chosen files one after another.
//
// The token comes from the link's #token= fragment, which browsers never send to the
// server, so it stays out of server and proxy logs. Every file goes through sendFile(), the
// one place that speaks the upload protocol (a later version swaps it for tus).
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var CHECK_URL = form.getAttribute("data-check-url");
  var UPLOAD_URL = form.getAttribute("data-upload-url");
  var MAX_SIZE = Number(form.getAttribute("data-max-size"));
  var MAX_SIZE_TEXT = form.getAttribute("data-max-size-text");
  // Abort when nothing has moved for this long, including while the server stores a large
  // file after the last byte was sent (the console client's default too).
  var STALL_MS = 600 * 1000;
  var NOT_COMPLETED = "The upload did not complete — check your connection and try again.";

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

  // --- formatting ------------------------------------------------------------------------

  function formatSize(bytes) {
    var units = ["B", "kB", "MB", "GB", "TB"];
    var size = bytes;
    var unit = 0;
    while (Math.abs(size) >= 1000 && unit < units.length - 1) { size /= 1000; unit += 1; }
    return unit === 0 ? size + " B" : size.toFixed(1) + " " + units[unit];
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

  function showTokenState(kind, text) {
    tokenStatus.className = "mt-2 alert alert-" + kind + " py-2 mb-0";
    tokenStatus.textContent = text;
  }

  // Resolves to the token's state ({valid, ticket, attempts, expires_at, detail}) or null.
  function checkToken() {
    var token = tokenInput.value.trim();
    // The console commands on the page carry the same token.
    document.querySelectorAll(".token-slot").forEach(function (slot) {
      slot.textContent = token || "TOKEN";
    });
    if (!token) {
      tokenStatus.className = "mt-2";
      tokenStatus.textContent = "";
      return Promise.resolve(null);
    }
    return fetch(CHECK_URL + encodeURIComponent(token), {
      cache: "no-store", headers: { "Accept": "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.status === 404) {
          return { valid: false, detail: body.detail || "upload token is not valid" };
        }
        if (!response.ok) {
          throw new Error(body.detail || "HTTP " + response.status);
        }
        return body;
      });
    }).then(function (state) {
      if (state.valid) {
        var expiry = state.expires_at
          ? "valid until " + new Date(state.expires_at).toLocaleString(undefined,
            { dateStyle: "medium", timeStyle: "short" })
          : "does not expire";
        showTokenState("success", "Ticket " + state.ticket + ": "
          + plural(state.attempts, "upload attempt") + " left, " + expiry + ".");
      } else {
        showTokenState("danger", "This token cannot be used: " + state.detail
          + ". Ask support for a new upload link.");
      }
      return state;
    }, function (error) {
      showTokenState("warning", "Could not check the token (" + error.message
        + "). Check your connection and try again.");
      return null;
    });
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
      items.push(item);
      list.appendChild(element);
      setState(item, "ready");
      setProgress(item, 0, "Ready to upload");
      // Refused here already: a file the server would refuse is not sent at all.
      if (file.size === 0) {
        setState(item, "refused");
        setResult(item, "danger", "This file is empty.");
      } else if (MAX_SIZE && file.size > MAX_SIZE) {
        setState(item, "refused");
        setResult(item, "danger", "This file is larger than the largest upload accepted ("
          + MAX_SIZE_TEXT + "). Split it, or ask support for another way.");
      }
    });
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
    setProgress(item, 0, "Ready to upload");
    if (!current) { start(); }
  }

  function updateButtons() {
    var ready = items.some(function (item) { return item.state === "ready"; });
    startButton.disabled = Boolean(current) || !ready;
    cancelButton.hidden = !current;
    // One token for the whole run: it cannot be changed half-way.
    tokenInput.readOnly = Boolean(current);
    checkButton.disabled = Boolean(current);
  }

  // --- sending one file ------------------------------------------------------------------

  // Sends one file; the only function that knows the protocol. Calls
  // onProgress(sentBytes, totalBytes) while sending and onDone(outcome) once, where
  // outcome is {status, body} for an answer of the server or {failure: "network" |
  // "timeout" | "cancelled"} when there was none. Returns a function that cancels.
  function sendFile(file, token, onProgress, onDone) {
    var xhr = new XMLHttpRequest();
    var finished = false;
    var lastMove = Date.now();
    var reason = "network";
    var watchdog = window.setInterval(function () {
      if (Date.now() - lastMove > STALL_MS) { reason = "timeout"; xhr.abort(); }
    }, 5000);

    function finish(outcome) {
      if (finished) { return; }
      finished = true;
      window.clearInterval(watchdog);
      onDone(outcome);
    }

    xhr.open("POST", UPLOAD_URL);
    xhr.setRequestHeader("Upload-Token", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (event) {
      lastMove = Date.now();
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    };
    xhr.onload = function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: a proxy's page */ }
      // An answer with status 0 is a request that never reached the server.
      finish(xhr.status ? { status: xhr.status, body: body } : { failure: "network" });
    };
    xhr.onerror = function () { finish({ failure: "network" }); };
    xhr.ontimeout = function () { finish({ failure: "timeout" }); };
    xhr.onabort = function () { finish({ failure: reason }); };

    var data = new FormData();
    data.append("file", file, file.name);
    xhr.send(data);
    return function cancel() { reason = "cancelled"; xhr.abort(); };
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

  function showOutcome(item, outcome) {
    var body = outcome.body || {};
    if (outcome.status === 201) {
      setState(item, "done");
      setProgress(item, 100, "100 %");
      setResult(item, "success", "Uploaded: " + formatSize(body.size) + " (" + body.size
        + " bytes), sha256 " + body.sha256);
      part(item, "upload-result").setAttribute("data-sha256", body.sha256 || "");
      return;
    }
    part(item, "upload-progress").textContent = outcome.failure
      ? "Stopped at " + item.percent + " %" : "";
    if (outcome.failure === "cancelled") {
      setState(item, "cancelled");
      setResult(item, "warning", item.allSent
        ? "Cancelled after the whole file was sent: the server may still store it."
        : "Cancelled: the file was not stored and no attempt was used.");
    } else if (outcome.failure) {
      setState(item, "failed");
      setResult(item, "danger", NOT_COMPLETED);
    } else if ((body.detail && outcome.status < 500) || outcome.status === 507) {
      // 401, 403, 413, 423, 507 …: the server says why, in the words the console client uses.
      setState(item, "refused");
      setResult(item, "danger", "The server refused the upload (HTTP " + outcome.status + "): "
        + (body.detail || "no reason given") + ".");
    } else {
      setState(item, "failed");
      setResult(item, "danger", "The server could not store the file (HTTP " + outcome.status
        + (body.detail ? ": " + body.detail : "") + "). Try again in a few minutes; if it "
        + "keeps failing, tell support.");
    }
  }

  function finishQueue(recheck) {
    current = null;
    updateButtons();
    if (recheck) { checkToken(); }  // show the attempts that are left
  }

  // The token is checked again before every file: a token used up or closed meanwhile
  // must not cost a long upload only to be refused at its end.
  function next() {
    var item = items.find(function (candidate) { return candidate.state === "ready"; });
    if (!item || cancelled) { finishQueue(true); return; }
    current = { item: item, cancel: function () { /* nothing is sent yet */ } };
    setState(item, "uploading");
    setProgress(item, 0, "Checking the token …");
    checkToken().then(function (state) {
      if (cancelled) {
        setState(item, "ready");
        setProgress(item, 0, "Ready to upload");
        finishQueue(false);
      } else if (!state) {
        showOutcome(item, { failure: "network" });
        finishQueue(false);
      } else if (!state.valid) {
        setState(item, "refused");
        setResult(item, "danger", "Not sent: this token cannot be used: " + state.detail + ".");
        finishQueue(false);
      } else {
        send(item);
      }
    });
  }

  function send(item) {
    var started = Date.now();
    var samples = [];
    setProgress(item, 0, "Starting …");
    current.cancel = sendFile(item.file, tokenInput.value.trim(), function (sent, total) {
      item.allSent = sent >= total;
      var progress = progressText(sent, total, started, samples);
      setProgress(item, progress[0], progress[1]);
    }, function (outcome) {
      showOutcome(item, outcome);
      next();
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
    event.returnValue = "An upload is running; leaving the page stops it.";
    return event.returnValue;
  });

  window.addEventListener("hashchange", function () {
    var token = tokenFromFragment();
    if (token) { tokenInput.value = token; checkToken(); }
  });
  tokenInput.value = tokenFromFragment() || tokenInput.value;
  checkToken();
}());
