#!/usr/bin/env bash
# Builds the pinned root file system that every AgentBench OS sample runs on (docs/evaluation.md,
# "AgentBench OS"): Debian 12 (bookworm) minbase plus the packages of the reference image's
# Dockerfile (python3, python3-pip, git, vim, curl, wget, zip, unzip, tree, installed as `apt install`
# does, with their Recommends). Ubuntu's archive, which the reference image came from, is not a
# source this project may build from, so the release is Debian's.
#
#   scripts/build-os-rootfs.sh [CACHE_DIR]      (default: $CYCLEQD_CACHE, else /var/cache/cycleqd)
#
# Result: CACHE_DIR/agentbench-os-rootfs/{root/, manifest.json}. root/ holds the tree with every
# owner shifted by UID_BASE (uid 0 inside the sandbox's user namespace is host uid UID_BASE), so the
# sandbox can map a whole id range without ever mapping a host user. manifest.json records the
# recipe, the installed package versions and a content hash of the tree. A second run with the
# same recipe reuses the tree. Needs root (mmdebstrap in root mode, chown).
set -euo pipefail

CACHE="${1:-${CYCLEQD_CACHE:-/var/cache/cycleqd}}"
DEST="$CACHE/agentbench-os-rootfs"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# uid/gid 0..65535 inside the sandbox = host UID_BASE..UID_BASE+65535, an id range no host account
# uses (systemd leaves 1879048192..2147483647 unassigned).
UID_BASE=2000000000
UID_COUNT=65536
# Fixed file times for what the build itself writes (mmdebstrap's reproducibility switch).
export SOURCE_DATE_EPOCH=1700000000
PACKAGES=(python3 python3-pip git vim curl wget zip unzip tree)
# Not in the Dockerfile, but in the reference image: samples 57 and 60 count processes with `ps`,
# and their checks fail on a "ps: command not found" line.
PACKAGES+=(procps)
# Offered through a local apt repository inside the image (not installed): sample 52 runs
# `apt update && apt install sudo -y`, which needs the network in the reference.
LOCAL_REPO_PACKAGES=(sudo)
LOCAL_REPO=/var/lib/cycleqd/apt-repo

log() { printf '[rootfs] %s\n' "$*"; }
die() { printf '[rootfs] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "building the AgentBench OS root file system needs root (mmdebstrap in root mode, chown to the sandbox's id range)"
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is not installed (Debian: apt-get install mmdebstrap, or ./build.sh setup)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to hash the tree"

# The recipe: everything above that decides the tree. A change rebuilds it.
RECIPE="suite=$SUITE mirror=$MIRROR variant=minbase packages=${PACKAGES[*]} recommends=yes local-repo=${LOCAL_REPO_PACKAGES[*]} uid-base=$UID_BASE uid-count=$UID_COUNT epoch=$SOURCE_DATE_EPOCH script=$(sha256sum "$0" | cut -c1-16)"

if [ -f "$DEST/manifest.json" ] && python3 - "$DEST/manifest.json" "$RECIPE" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
sys.exit(0 if m.get("recipe") == sys.argv[2] else 1)
PY
then
  log "up to date: $DEST ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hash"])' "$DEST/manifest.json"))"
  exit 0
fi

mkdir -p "$CACHE"
chmod 0755 "$CACHE"
WORK="$DEST.tmp"
start=$(date +%s)
rm -rf "$DEST.old"
# A build interrupted after mmdebstrap (same recipe) resumes with the steps after it.
if [ "$(cat "$WORK/bootstrapped" 2>/dev/null)" = "$RECIPE" ]; then
  log "resuming the build in $WORK"
else
rm -rf "$WORK"
mkdir -p "$WORK"
# Only root may enter: the tree holds setuid programs owned by UID_BASE, which no host user
# should be able to run. The sandbox never walks this path (its launcher mounts it as root).
chmod 0700 "$WORK"
log "mmdebstrap $SUITE (minbase + ${PACKAGES[*]}) into $WORK/root (several minutes)"
# Ubuntu's container images leave man pages and documentation out; so does this one.
mmdebstrap --mode=root --variant=minbase --format=directory \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --install-recommends '"${PACKAGES[*]}"' >/dev/null' \
  --customize-hook='mkdir -p "$1'"$LOCAL_REPO"'/partial" && chroot "$1" apt-get install -y -q --download-only -o Dir::Cache::Archives='"$LOCAL_REPO"' '"${LOCAL_REPO_PACKAGES[*]}"' >/dev/null && rm -rf "$1'"$LOCAL_REPO"'/partial" "$1'"$LOCAL_REPO"'/lock"' \
  --customize-hook='echo "deb [trusted=yes] file:'"$LOCAL_REPO"' ./" > "$1/etc/apt/sources.list"' \
  --customize-hook='printf "%s\n" "127.0.0.1	localhost" > "$1/etc/hosts"; : > "$1/etc/hostname"; : > "$1/etc/resolv.conf"' \
  "$SUITE" "$WORK/root" "$MIRROR" 2>&1 | grep -v '^I: ' || true
[ -x "$WORK/root/usr/bin/python3" ] || die "mmdebstrap did not produce a usable tree in $WORK/root"
printf '%s' "$RECIPE" > "$WORK/bootstrapped"
fi

log "local apt repository ($LOCAL_REPO), id shift by $UID_BASE, manifest"
python3 - "$WORK" "$UID_BASE" "$UID_COUNT" "$RECIPE" "$LOCAL_REPO" <<'PY'
import hashlib, json, os, stat, subprocess, sys

work, base, count, recipe, local_repo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
root = os.path.join(work, "root")

# A flat repository index (what apt-ftparchive would write) for the .debs in the local repository.
repo = root + local_repo
entries = []
for name in sorted(os.listdir(repo)):
    if not name.endswith(".deb"):
        continue
    path = os.path.join(repo, name)
    control = subprocess.run(["dpkg-deb", "-f", path], check=True, capture_output=True, text=True).stdout.rstrip("\n")
    data = open(path, "rb").read()
    entries.append(f"{control}\nFilename: ./{name}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
if not entries:
    sys.exit(f"no .deb was downloaded into {repo}")
with open(os.path.join(repo, "Packages"), "w") as f:
    f.write("\n".join(entries))

# Package versions, as dpkg inside the tree knows them.
out = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Version} ${Architecture}\n"],
                     check=True, capture_output=True, text=True).stdout
packages = sorted(line.split(" ") for line in out.splitlines() if line)

def entries():
    """Every path of the tree once, in a fixed order (the top folder first)."""
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            yield os.path.join(dirpath, name)


def inside(i):
    """An owner id as the sandbox sees it (the tree may be shifted already: this step is rerunnable)."""
    return i - base if base <= i < base + count else i


# Content hash over every entry (ids as seen inside the sandbox); times are left out.
h = hashlib.sha256()
files = 0
size = 0
for path in entries():
    st = os.lstat(path)
    rel = os.path.relpath(path, root)
    rec = f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0{inside(st.st_uid)}\0{inside(st.st_gid)}\0"
    if stat.S_ISREG(st.st_mode):
        fh = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        rec += fh.hexdigest()
        files += 1
        size += st.st_size
    elif stat.S_ISLNK(st.st_mode):
        rec += os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        rec += f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    h.update(rec.encode("utf-8", "surrogateescape") + b"\n")
digest = "sha256:" + h.hexdigest()

# Shift every owner into the sandbox's id range. chown clears setuid/setgid bits and file
# capabilities, so both are put back.
for path in entries():
    st = os.lstat(path)
    if st.st_uid >= count and st.st_gid >= count and inside(st.st_uid) < count and inside(st.st_gid) < count:
        continue  # shifted by an earlier, interrupted run
    if st.st_uid >= count or st.st_gid >= count:
        sys.exit(f"{path}: owner {st.st_uid}:{st.st_gid} is outside the mapped range 0..{count - 1}")
    caps = None
    if stat.S_ISREG(st.st_mode):
        try:
            caps = os.getxattr(path, "security.capability", follow_symlinks=False)
        except OSError:
            caps = None
    os.lchown(path, st.st_uid + base, st.st_gid + base)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    if caps is not None:
        os.setxattr(path, "security.capability", caps, follow_symlinks=False)

manifest = {
    "hash": digest,
    "recipe": recipe,
    "uid_base": base,
    "uid_count": count,
    "files": files,
    "bytes": size,
    "packages": [{"name": p[0], "version": p[1], "arch": p[2]} for p in packages],
}
with open(os.path.join(work, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(f"[rootfs] {len(packages)} packages, {files} files, {size / 2**20:.0f} MiB, {digest}")
PY

rm -f "$WORK/bootstrapped"
chmod 0644 "$WORK/manifest.json"
if [ -d "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
mv "$WORK" "$DEST"
rm -rf "$DEST.old"
log "built $DEST in $(( $(date +%s) - start )) s ($(du -sh "$DEST/root" | cut -f1))"
