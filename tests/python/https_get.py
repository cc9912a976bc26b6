"""GET a URL over HTTPS with Python's own ssl/urllib (a client fleetset did not write).

Usage: https_get.py URL CA_FILE|- TOKEN_FILE|-
  CA_FILE  CA certificates to trust ("-": the system defaults only)
  TOKEN_FILE  a file whose content is sent as `authorization: Bearer <token>` ("-": none)
Prints one JSON line: {"status": 200, "body": "..."} or {"error": "ssl", "detail": "..."}.
"""
import json
import ssl
import sys
import urllib.error
import urllib.request

url, ca, token_file = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=None if ca == "-" else ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
req = urllib.request.Request(url)
if token_file != "-":
    with open(token_file) as f:
        req.add_header("Authorization", "Bearer " + f.read().strip())
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": ""}))
except urllib.error.URLError as e:
    kind = "ssl" if isinstance(e.reason, ssl.SSLError) else "url"
    print(json.dumps({"error": kind, "detail": str(e.reason)}))
except ssl.SSLError as e:
    print(json.dumps({"error": "ssl", "detail": str(e)}))
