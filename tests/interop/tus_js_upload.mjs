// Uploads one file with tus-js-client (npm) under Node; driven by tests/interop/test_tus_js.py.
//
//   UPLOAD_TOKEN=TOKEN node tus_js_upload.mjs --modules=DIR --endpoint=URL --file=PATH
//        [--filename=NAME] [--chunk-size=BYTES] [--parallel=N] [--data-during-creation]
//        [--upload-url=URL] [--url-storage=FILE] [--abort-after=BYTES [--terminate]]
//        [--no-retry]
//
// The ticket's token comes from the environment (not the command line, which other users
// of the machine can read). Values are best given as --name=value: a value that starts
// with "-" is otherwise taken for an option.
// --modules is the npm prefix tus-js-client was installed into (the test installs it; it is
// never committed). Every event is one JSON line on stdout, so the test can follow the
// upload and kill this process at a known offset:
//   {"event": "request", "method", "url", "offset", "concat"}   before each HTTP request
//   {"event": "response", "method", "url", "status"}
//   {"event": "url", "url"}                      the upload URL, as soon as it is known
//   {"event": "chunk", "offset", "total"}        after each accepted chunk
//   {"event": "aborted", "offset"}               --abort-after reached: upload.abort(),
//                                                with --terminate abort(true) (a DELETE)
//   {"event": "success", "url", "status", "archive_id", "receipt"}
//   {"event": "error", "message"}                and exit status 1
// --url-storage keeps the upload URL in a file under the file's fingerprint
// (FileUrlStorage), so a later run resumes from it with findPreviousUploads().

import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    endpoint: { type: 'string' },
    file: { type: 'string' },
    filename: { type: 'string' },
    'chunk-size': { type: 'string' },
    parallel: { type: 'string' },
    'data-during-creation': { type: 'boolean', default: false },
    'upload-url': { type: 'string' },
    'url-storage': { type: 'string' },
    'abort-after': { type: 'string' },
    terminate: { type: 'boolean', default: false },
    'no-retry': { type: 'boolean', default: false },
  },
})

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`)
}

function fail(message) {
  emit('error', { message })
  process.exitCode = 1
}

for (const name of ['modules', 'endpoint', 'file']) {
  if (!args[name]) {
    fail(`--${name} is required`)
    process.exit()
  }
}
const token = process.env.UPLOAD_TOKEN
if (!token) {
  fail('UPLOAD_TOKEN is required')
  process.exit()
}

// ESM ignores NODE_PATH: resolve the package from the prefix the test installed it into.
const require = createRequire(path.join(path.resolve(args.modules), 'package.json'))
const tus = require('tus-js-client')

const options = {
  endpoint: args.endpoint,
  headers: { 'Upload-Token': token },
  metadata: { filename: args.filename ?? path.basename(args.file) },
  uploadDataDuringCreation: args['data-during-creation'],
  // The test checks every answer itself; a retry would hide a wrong one.
  retryDelays: args['no-retry'] ? null : undefined,
  onBeforeRequest(req) {
    emit('request', {
      method: req.getMethod(),
      url: req.getURL(),
      offset: req.getHeader('Upload-Offset') ?? null,
      concat: req.getHeader('Upload-Concat') ?? null,
    })
  },
  onAfterResponse(req, res) {
    emit('response', { method: req.getMethod(), url: req.getURL(), status: res.getStatus() })
  },
  onUploadUrlAvailable() {
    emit('url', { url: upload.url })
  },
}
if (options.retryDelays === undefined) delete options.retryDelays
if (args['chunk-size']) options.chunkSize = Number(args['chunk-size'])
if (args.parallel) options.parallelUploads = Number(args.parallel)
if (args['upload-url']) options.uploadUrl = args['upload-url']
if (args['url-storage']) options.urlStorage = new tus.FileUrlStorage(args['url-storage'])

const abortAfter = args['abort-after'] ? Number(args['abort-after']) : null

// An fs.ReadStream with a path: tus-js-client reads each chunk (and each part of a
// parallel upload) from the file at its offset, which is what makes resuming possible.
const upload = new tus.Upload(fs.createReadStream(args.file), {
  ...options,
  onChunkComplete(chunkSize, offset, total) {
    emit('chunk', { offset, total })
    if (abortAfter !== null && offset >= abortAfter) {
      upload.abort(args.terminate).then(() => emit('aborted', { offset }), (err) => fail(String(err)))
    }
  },
  onSuccess({ lastResponse }) {
    let receipt = null
    try {
      receipt = JSON.parse(lastResponse.getBody() || 'null')
    } catch {
      // a 204 or a HEAD answer has no body
    }
    emit('success', {
      url: upload.url,
      status: lastResponse.getStatus(),
      archive_id: lastResponse.getHeader('Upload-Archive-Id') ?? null,
      receipt,
    })
  },
  onError(err) {
    fail(String(err))
  },
})

if (args['url-storage']) {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0])
}
upload.start()
