// The public upload page: check the token, then send the chosen files one after another.
//
// The token comes from the link's #token= fragment, which browsers never send to the
// server, so it stays out of server and proxy logs. Every file goes through sendFile()
// (upload-tus.js), the one place that speaks the upload protocol; every message comes from
// upload-words.js. This file keeps the page's state: the token's, and each file's.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.UploadPage) { return; }
  var words = window.UploadPage.words;
  var tus = window.UploadPage.tus;
  var formatSize = words.formatSize;
  var loadEntry = tus.loadEntry;
  var CHECK_URL = form.getAttribute("data-check-url");
  var MAX_SIZE = Number(form.getAttribute("data-max-size"));

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
        return { judged: words.judgeToken(response.status, body,
          response.headers.get("Retry-After"), sending()),
          body: response.status === 200 ? body : null };
      });
    }, function () {
      return { judged: words.judgeToken(0, null), body: null };
    }).then(function (answer) {
      if (number !== checks) { return tokenCheck.state; }  // a newer check is under way
      tokenCheck = { kind: answer.judged.kind, state: answer.body };
      showTokenState(answer.judged.alert, answer.judged.text);
      judgeItems();
      return tokenCheck.state;
    });
  }

  function sending() {
    return current && current.item.file;
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
      setResult(item, "danger", words.blockedText(item.file.name,
        Boolean(stoppedUploadOf(item.file))));
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
    return stopped ? "Ready to upload: continues the upload stopped at " + words.stoppedAt(stopped)
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
        setResult(item, "danger", words.tooLargeText(MAX_SIZE));
      }
    });
    judgeItems();
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

  // --- the queue -------------------------------------------------------------------------

  // What the customer keeps: the upload's receipt, shown and copyable.
  function showReceipt(item, body) {
    var rows = words.receiptRows(body);
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
      setResult(item, "success", words.storedText(body, outcome.earlier));
      part(item, "upload-result").setAttribute("data-sha256", body.sha256 || "");
      showReceipt(item, body);
      return;
    }
    part(item, "upload-progress").textContent = outcome.failure
      ? "Stopped at " + item.percent + " %" : "";
    if (outcome.failure === "cancelled") {
      setState(item, "cancelled");
      setResult(item, "warning", words.cancelledText(item.allSent, outcome.terminated));
    } else if (outcome.failure) {
      setState(item, "failed");
      setResult(item, "danger", outcome.resumable
        ? words.NOT_COMPLETED + " Retry continues where it stopped." : words.NOT_COMPLETED);
    } else {
      var refusal = words.refusalOf(outcome, MAX_SIZE);
      setState(item, refusal.again ? "failed" : "refused");
      setResult(item, "danger", refusal.text);
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
    current.cancel = tus.sendFile(item.file, tokenInput.value.trim(), {
      uploadUrl: form.getAttribute("data-upload-url"),
      chunkSize: form.getAttribute("data-chunk-size"),
      retryDelays: form.getAttribute("data-retry-delays"),
    }, {
      progress: function (sent) {
        item.allSent = sent >= total;
        var progress = words.progressText(sent, total, started, samples);
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
          + "interrupted, trying again in " + words.formatDuration(seconds) + " …";
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
  tus.pruneEntries();
  checkToken();
}());
