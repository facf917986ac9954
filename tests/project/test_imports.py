"""What the app loads: with the local backend, the S3 client stays out of the process.

boto3 and botocore cost about 8 MB of resident memory; the app factory's scan would import
the S3 backend's module (and so boto3) unless told not to. Checked in a fresh interpreter,
since this test process imports the S3 backend for its own tests.
"""

import json
import subprocess
import sys

PROGRAM = """
import json, sys
from collector import main
main({}, debug="true", secret_key="imports-test-secret-0123456789",
     db_url="sqlite:///" + sys.argv[1], data_dir=sys.argv[2])
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("boto3", "botocore", "alembic")
                        or m.startswith(("collector.importer", "collector.cli")))))
"""


def test_local_backend_app_loads_no_s3_client_importer_or_alembic(tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROGRAM, str(tmp_path / "db.sqlite3"),
         str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
