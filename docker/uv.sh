#!/bin/sh
# uv, which the image keeps xz-compressed (/usr/local/lib/prefect-aci/uv.xz: 12 MB in the pulled
# layer instead of 17, and only starts that install EXTRA_PIP_PACKAGES need it). The first call in
# a container unpacks it into a folder of this user's own under TMPDIR (under a second); later
# calls run it from there. A folder of that name that another user made first (a shared /tmp) is
# never used: a new private one is made instead.
set -eu
packed=/usr/local/lib/prefect-aci/uv.xz
dir="${TMPDIR:-/tmp}/prefect-aci-uv-$(id -u)"
if ! mkdir -m 700 "$dir" 2>/dev/null; then
    if [ -L "$dir" ] || [ "$(stat -c %u:%a "$dir")" != "$(id -u):700" ]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/prefect-aci-uv.XXXXXX")
    fi
fi
unpacked="$dir/uv"
if [ ! -x "$unpacked" ]; then
    python3 -I -c 'import lzma, os, shutil, sys
src, dst = sys.argv[1:3]
tmp = f"{dst}.{os.getpid()}"
with lzma.open(src) as packed, open(tmp, "wb") as out:
    shutil.copyfileobj(packed, out, 1 << 20)
os.chmod(tmp, 0o755)
os.replace(tmp, dst)' "$packed" "$unpacked"
fi
exec "$unpacked" "$@"
