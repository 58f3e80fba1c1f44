"""oras-py (PyPI `oras`) pushes an artifact in 1 MiB PATCHes with a `subject` through regapp's
edge, then pulls it back. oras-py sends each request without credentials first and repeats it
with them after the 401, so every PATCH's 1 MiB body meets a 401 before it is accepted.

Usage: python oras_chunked_push.py HOST USER PASSWORD CA_FILE WORKDIR
Prints one line per step; exits non-zero on any failure.
"""

import hashlib
import os
import sys

import oras.client
import oras.oci
import requests

host, user, password, ca, workdir = sys.argv[1:6]
os.chdir(workdir)  # oras-py pushes only files below the working directory

client = oras.client.OrasClient(hostname=host, tls_verify=ca, auth_backend="basic")
client.auth.set_basic_auth(user, password)

with open("base.txt", "wb") as f:
    f.write(b"the image the artifact is about\n")
base = client.push(target=f"{host}/oras/app:base", files=["base.txt"], do_chunked=True)
print("base pushed", base.status_code)

# The subject: the manifest just pushed, by the digest and size the registry reports.
head = requests.head(
    f"https://{host}/v2/oras/app/manifests/base",
    auth=(user, password),
    verify=ca,
    headers={"Accept": oras.defaults.default_manifest_media_type},
)
head.raise_for_status()
subject = oras.oci.Subject(
    mediaType=oras.defaults.default_manifest_media_type,
    digest=head.headers["Docker-Content-Digest"],
    size=int(head.headers["Content-Length"]),
)

payload = os.urandom(3 * 1024 * 1024 + 12345)
with open("sbom.bin", "wb") as f:
    f.write(payload)
pushed = client.push(
    target=f"{host}/oras/app:sbom",
    files=["sbom.bin"],
    subject=subject,
    do_chunked=True,
    chunk_size=1024 * 1024,
)
print("artifact pushed", pushed.status_code)

referrers = requests.get(
    f"https://{host}/v2/oras/app/referrers/{subject.digest}", auth=(user, password), verify=ca
)
referrers.raise_for_status()
print("referrers", len(referrers.json()["manifests"]))

os.makedirs("pulled", exist_ok=True)
files = client.pull(target=f"{host}/oras/app:sbom", outdir="pulled")
with open(files[0], "rb") as f:
    pulled = f.read()
same = hashlib.sha256(pulled).digest() == hashlib.sha256(payload).digest()
print("pulled", len(pulled), "bytes", "identical" if same else "DIFFERENT")
sys.exit(0 if same else 1)
