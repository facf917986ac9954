"""The waitress request parser that refuses a body the disk could not even spool."""

import json

from waitress.adjustments import Adjustments

from collector.archives.uploads.spool import space_checking_channel


def _parse(tmp_path, request, reserve):
    parser_class = space_checking_channel(str(tmp_path), reserve).parser_class
    parser = parser_class(Adjustments(inbuf_overflow=1024))
    parser.received(request)
    return parser


def test_a_body_that_cannot_fit_is_refused_at_the_headers(tmp_path):
    parser = _parse(tmp_path, b"PATCH /api/v1/uploads/x HTTP/1.1\r\nHost: h\r\n"
                              b"Tus-Resumable: 1.0.0\r\nContent-Length: 2000\r\n\r\n",
                    reserve=2**62)
    assert parser.completed
    status, headers, body = parser.error.to_response()
    assert status == "507 Insufficient Storage"
    assert ("Tus-Resumable", "1.0.0") in headers
    assert "free space" in json.loads(body)["detail"]


def test_a_plain_request_gets_no_tus_header_and_a_fitting_body_passes(tmp_path):
    refused = _parse(tmp_path, b"POST /api/v1/archives/ HTTP/1.1\r\nHost: h\r\n"
                               b"Content-Length: 2000\r\n\r\n", reserve=2**62)
    assert all(name != "Tus-Resumable" for name, _ in refused.error.to_response()[1])
    fits = _parse(tmp_path, b"POST /api/v1/archives/ HTTP/1.1\r\nHost: h\r\n"
                            b"Content-Length: 2000\r\n\r\n", reserve=0)
    assert fits.error is None and not fits.completed
