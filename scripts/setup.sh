#!/usr/bin/env bash
# Install Hark as a service: from a fresh Debian / Raspberry Pi OS / Ubuntu to a running, hardened daemon.
#
#   sudo scripts/setup.sh                      # system service (talks to the sound card through ALSA)
#   sudo scripts/setup.sh --user               # user service for desktops where PipeWire/PulseAudio owns the card
#   sudo scripts/setup.sh --dry-run            # print every action, change nothing
#   sudo scripts/setup.sh --uninstall [--purge]
#   scripts/setup.sh --root DIR --no-apt       # lay out a staging root (image builders, tests)
#
# Idempotent: every step compares before it writes, a second run says "nothing changed". What it installs is
# recorded in /opt/hark/manifest, and --uninstall removes exactly that (keeping /etc/hark unless --purge).
#
# Test hooks (environment): HARK_SETUP_OS_RELEASE=FILE, HARK_SETUP_ARCH=ARCH, HARK_SETUP_PYTHON=EXE replace the
# probes of the OS checks; HARK_SETUP_SKIP_DEPS=1 skips the virtualenv and model downloads (scripts/install-deps,
# scripts/fetch-models) and `hark check`.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_PACKAGES=(python3 python3-venv python3-dev python3-pip gcc portaudio19-dev libasound2-plugins alsa-utils
  ca-certificates)
ROOT="" DRY=0 USER_MODE=0 UNINSTALL=0 PURGE=0 NO_APT=0 YES=0 KEY_FILE="" MQTT_FILE="" CHANGES=0
STAGING=0 BOOTED=0 DESKTOP_USER=""

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options: --user --dry-run --uninstall --purge --root DIR --api-key-file F --mqtt-password-file F --no-apt --yes
EOF
}

die() { echo "setup.sh: error: $*" >&2; exit 1; }
say() { echo "==> $*"; }
ok() { echo "    ok: $*"; }
changed() { CHANGES=$((CHANGES + 1)); echo "    changed: $*"; }
# Every command that changes the system goes through run: printed always, executed unless --dry-run.
run() {
  echo "    \$ $*"
  [[ $DRY == 1 ]] || "$@"
}
p() { echo "${ROOT}$1"; }  # a system path inside the target root

parse_args() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      --user) USER_MODE=1 ;;
      --dry-run) DRY=1 ;;
      --uninstall) UNINSTALL=1 ;;
      --purge) PURGE=1 ;;
      --no-apt) NO_APT=1 ;;
      --yes | -y) YES=1 ;;
      --root) [[ $# -ge 2 && -n $2 ]] || die "--root needs a directory"; ROOT=$2; shift ;;
      --api-key-file) [[ $# -ge 2 ]] || die "--api-key-file needs a file"; KEY_FILE=$2; shift ;;
      --mqtt-password-file) [[ $# -ge 2 ]] || die "--mqtt-password-file needs a file"; MQTT_FILE=$2; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; echo "setup.sh: error: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
  done
  [[ $PURGE == 0 || $UNINSTALL == 1 ]] || die "--purge only goes with --uninstall"
  if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || die "--root $ROOT: not a directory (create it first)"
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT == / ]] && ROOT="" || STAGING=1
  fi
  # sd_booted(): systemd is PID 1 only if this directory exists; in a chroot or container build it does not.
  [[ $STAGING == 0 && -d /run/systemd/system ]] && BOOTED=1
  return 0
}

# --- checks -------------------------------------------------------------------------------------------------

check_os() {
  local file=${HARK_SETUP_OS_RELEASE:-/etc/os-release} id="" like="" name=""
  [[ -r $file ]] || die "cannot read $file: Hark's installer supports Debian, Raspberry Pi OS and Ubuntu"
  id=$(. "$file" && echo "${ID:-}")
  like=$(. "$file" && echo "${ID_LIKE:-}")
  name=$(. "$file" && echo "${PRETTY_NAME:-${ID:-unknown}}")
  case " $id $like " in
    *" debian "* | *" raspbian "* | *" ubuntu "*) ok "OS: $name" ;;
    *) die "unsupported OS '$name': this installer needs Debian, Raspberry Pi OS or Ubuntu (apt and systemd)" ;;
  esac
}

check_arch() {
  local arch=${HARK_SETUP_ARCH:-}
  [[ -n $arch ]] || arch=$(dpkg --print-architecture 2>/dev/null) || die "dpkg not found: is this Debian-based?"
  case $arch in
    amd64 | arm64) ok "architecture: $arch" ;;
    armhf | armel | i386)
      die "32-bit userland ($arch): no onnxruntime wheels for 32-bit; install the 64-bit Raspberry Pi OS (arm64)" ;;
    *) die "unsupported architecture '$arch': onnxruntime publishes wheels for amd64 and arm64 only" ;;
  esac
}

# Returns 1 when python3 is missing (apt installs it; checked again afterwards); dies when too old or too new.
check_python() {
  local py=${HARK_SETUP_PYTHON:-python3} ver
  command -v "$py" >/dev/null 2>&1 || return 1
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "$py does not run"
  case $ver in
    3.1[0-3]) ok "Python $ver" ;;
    *) die "Python $ver found ($py): Hark needs Python 3.10 to 3.13 (Debian 12+, Ubuntu 22.04+ ship one)" ;;
  esac
}

preflight() {
  say "Checking the system"
  check_os
  check_arch
  if ! check_python; then
    [[ $NO_APT == 0 && $STAGING == 0 ]] || die "python3 not found: install Python 3.10 or newer"
    ok "python3 missing: apt installs it next"
  fi
  if [[ $DRY == 0 && $STAGING == 0 && $EUID -ne 0 ]]; then
    die "must run as root (sudo $0 $*), or use --dry-run / --root DIR"
  fi
  if [[ $USER_MODE == 1 ]]; then
    DESKTOP_USER=${SUDO_USER:-}
    [[ -n $DESKTOP_USER && $DESKTOP_USER != root ]] ||
      die "--user installs for the desktop user who runs sudo: run 'sudo $0 --user' from that user's session"
  fi
  return 0
}

# --- manifest -----------------------------------------------------------------------------------------------

MANIFEST=/opt/hark/manifest
record() {  # record KIND PATH: what --uninstall will remove (paths without the --root prefix)
  [[ $DRY == 1 ]] && return 0
  local m
  m=$(p $MANIFEST)
  mkdir -p "$(dirname "$m")"
  grep -qxF "$*" "$m" 2>/dev/null || echo "$*" >>"$m"
}

# --- install steps ------------------------------------------------------------------------------------------

install_apt() {
  say "Debian packages"
  if [[ $NO_APT == 1 || $STAGING == 1 ]]; then
    ok "skipped (--no-apt or --root); the target needs: ${APT_PACKAGES[*]}"
    return 0
  fi
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    ok "all present"
    return 0
  fi
  run apt-get update -q
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  record apt "${missing[@]}"
  changed "installed ${missing[*]}"
  if [[ $DRY == 0 ]]; then check_python || die "python3 still missing after apt"; fi
}

src_hash() {
  (cd "$SRC" && find . \( -name .git -o -name .venv -o -name models -o -name __pycache__ -o -name '*.egg-info' \
    -o -name '.*_cache' -o -name .hark-run -o -name build -o -name dist \) -prune -o -type f -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

install_src() {
  say "Project files -> /opt/hark/src"
  local dest stamp hash
  dest=$(p /opt/hark/src)
  stamp=$dest/.hark-src-sha256
  hash=$(src_hash)
  if [[ -f $stamp && $(cat "$stamp") == "$hash" ]]; then
    ok "unchanged"
    return 0
  fi
  run mkdir -p "$(p /opt/hark)"
  run rm -rf "$dest.tmp"
  run mkdir -p "$dest.tmp"
  echo "    \$ tar -C $SRC ... | tar -C $dest.tmp -x   (without .git, .venv, models, caches)"
  if [[ $DRY == 0 ]]; then
    tar -C "$SRC" --exclude=.git --exclude=.venv --exclude=./models --exclude=__pycache__ --exclude='*.egg-info' \
      --exclude='.*_cache' --exclude=.hark-run --exclude=./build --exclude=./dist -cf - . | tar -C "$dest.tmp" -xf -
    echo "$hash" >"$dest.tmp/.hark-src-sha256"
  fi
  run rm -rf "$dest"
  run mv "$dest.tmp" "$dest"
  record tree /opt/hark
  changed "copied the project (version ${hash:0:12})"
}

install_venv_and_models() {
  say "Virtualenv /opt/hark/venv and models /opt/hark/models"
  if [[ ${HARK_SETUP_SKIP_DEPS:-0} == 1 ]]; then
    ok "skipped (HARK_SETUP_SKIP_DEPS=1)"
    return 0
  fi
  if [[ $STAGING == 1 ]]; then
    ok "skipped in a staging root (a virtualenv cannot be moved): run setup.sh inside the image to build it"
    return 0
  fi
  local stamp hash
  stamp=/opt/hark/.hark-deps-sha256
  hash=$(src_hash)
  if [[ -f $stamp && $(cat "$stamp") == "$hash" && -x /opt/hark/venv/bin/hark ]]; then
    ok "up to date"
    return 0
  fi
  run /opt/hark/src/scripts/install-deps /opt/hark/venv --no-editable
  run /opt/hark/venv/bin/python /opt/hark/src/scripts/fetch-models --dest /opt/hark/models
  [[ $DRY == 1 ]] || echo "$hash" >"$stamp"
  record tree /opt/hark
  changed "virtualenv and models installed"
}

install_user() {
  say "System user 'hark' (group audio, home /var/lib/hark)"
  local conf
  conf=$(p /usr/lib/sysusers.d/hark.conf)
  # Also a sysusers.d entry: an image built with --root gets the user on first boot.
  put_text "$conf" 0644 "$(printf 'u hark - "Hark smart speaker" /var/lib/hark /usr/sbin/nologin\nm hark audio\n')"
  record file /usr/lib/sysusers.d/hark.conf
  if [[ $STAGING == 1 ]]; then
    ok "staging root: the user is created at first boot by systemd-sysusers"
    return 0
  fi
  if id hark >/dev/null 2>&1; then
    if id -nG hark | tr ' ' '\n' | grep -qx audio; then ok "user hark exists"; return 0; fi
    run usermod -a -G audio hark
    changed "added hark to group audio"
    return 0
  fi
  run useradd --system --user-group --groups audio --home-dir /var/lib/hark --no-create-home \
    --shell /usr/sbin/nologin --comment "Hark smart speaker" hark
  record user hark
  changed "created user hark"
}

# put_text PATH MODE TEXT [OWNER]: write only when content or mode differ.
put_text() {
  local path=$1 mode=$2 text=$3 owner=${4:-}
  if [[ -f $path && "$(cat "$path")" == "$text" && $(stat -c %a "$path") == "${mode#0}" ]]; then
    return 0
  fi
  echo "    \$ write $path (mode $mode${owner:+, owner $owner})"
  if [[ $DRY == 0 ]]; then
    mkdir -p "$(dirname "$path")"
    (umask 077 && printf '%s\n' "$text" >"$path.tmp")
    chmod "$mode" "$path.tmp"
    [[ -z $owner ]] || chown "$owner" "$path.tmp"
    mv -f "$path.tmp" "$path"
  fi
  changed "$path"
}

install_state_dir() {
  [[ $USER_MODE == 1 ]] && return 0  # a user unit keeps state in ~/.local/state/hark
  say "State directory /var/lib/hark"
  local dir owner=hark:hark
  dir=$(p /var/lib/hark)
  [[ $STAGING == 1 ]] && owner=""  # no hark user yet: systemd's StateDirectory= fixes ownership at first start
  if [[ -d $dir && $(stat -c %a "$dir") == 700 ]] && { [[ -z $owner ]] || [[ $(stat -c %U "$dir") == hark ]]; }; then
    ok "present"
  else
    run install -d -m 0700 ${owner:+-o hark -g hark} "$dir"
    changed "$dir"
  fi
  record tree /var/lib/hark
}

install_config() {
  say "Configuration /etc/hark/config.toml"
  local new=$SRC/config.toml dest pristine
  dest=$(p /etc/hark/config.toml)
  pristine=$(p /opt/hark/config.toml.default)  # the default we installed last: tells edited from untouched
  [[ -f $new ]] || die "$new is missing from the checkout: re-clone the repository"
  record config /etc/hark
  if [[ -f $dest ]] && cmp -s "$new" "$dest"; then
    ok "up to date"
  elif [[ ! -f $dest ]] || { [[ -f $pristine ]] && cmp -s "$pristine" "$dest"; }; then
    run install -D -m 0644 "$new" "$dest"
    changed "$dest (new default)"
  elif [[ -f $dest.new ]] && cmp -s "$new" "$dest.new"; then
    ok "kept your edited config; the newer default is still waiting in $dest.new"
  else
    run install -m 0644 "$new" "$dest.new"
    changed "$dest.new: you edited config.toml, so it was kept; compare: diff $dest $dest.new"
  fi
  if ! { [[ -f $pristine ]] && cmp -s "$new" "$pristine"; }; then
    run install -D -m 0644 "$new" "$pristine"
  fi
}

# read_secret FILE PROMPT: first line of FILE, else a hidden prompt on a TTY, else empty (local-only use).
read_secret() {
  local file=$1 prompt=$2 value=""
  if [[ -n $file ]]; then
    [[ -r $file ]] || die "cannot read $file: expected a file holding the secret on its first line"
    IFS= read -r value <"$file" || true
    value=${value%$'\r'}
    [[ -n $value ]] || die "$file is empty: expected the secret on its first line"
  elif [[ $YES == 0 && $DRY == 0 && -t 0 ]]; then
    IFS= read -r -s -p "    $prompt (empty = none): " value || true
    echo >&2
  fi
  [[ $value != *"'"* ]] || die "secret from ${file:-the prompt} contains a single quote; /etc/hark/env cannot hold it"
  printf '%s' "$value"
}

install_env() {
  say "Secrets /etc/hark/env (mode 0600)"
  local dest key mqtt owner=0:0 old_key="" old_mqtt=""
  dest=$(p /etc/hark/env)
  [[ $USER_MODE == 1 ]] && owner=$DESKTOP_USER  # a user manager reads EnvironmentFile= with the user's rights
  if [[ -f $dest ]]; then
    old_key=$(sed -n "s/^OPENAI_API_KEY='\(.*\)'$/\1/p" "$dest")
    old_mqtt=$(sed -n "s/^HARK_MQTT_PASSWORD='\(.*\)'$/\1/p" "$dest")
    if [[ -z $KEY_FILE && -z $MQTT_FILE ]]; then
      ensure_mode "$dest" 600 "$owner"
      ok "kept (edit it, or re-run with --api-key-file F)"
      return 0
    fi
  fi
  key=$old_key mqtt=$old_mqtt
  if [[ -n $KEY_FILE || ! -f $dest ]]; then key=$(read_secret "$KEY_FILE" "OpenAI API key"); fi
  if [[ -n $MQTT_FILE || ! -f $dest ]]; then mqtt=$(read_secret "$MQTT_FILE" "MQTT password"); fi
  [[ -n $key ]] || echo "    note: no OpenAI API key: Hark answers locally only until you add one to /etc/hark/env"
  put_text "$dest" 0600 "$(printf '%s\n' "# Hark secrets, read by systemd (EnvironmentFile=). Keep mode 0600." \
    "OPENAI_API_KEY='$key'" "HARK_MQTT_PASSWORD='$mqtt'")" "$owner"
}

ensure_mode() {  # ensure_mode PATH MODE OWNER: repair permissions someone loosened
  if [[ $(stat -c %a "$1") != "$2" ]]; then run chmod "$2" "$1"; changed "$1 mode $2"; fi
  [[ $STAGING == 1 ]] && return 0
  if [[ $(stat -c %u "$1") != "$(id -u "${3%%:*}")" ]]; then run chown "$3" "$1"; changed "$1 owner $3"; fi
  return 0
}

unit_path() {
  if [[ $USER_MODE == 1 ]]; then echo /etc/systemd/user/hark.service; else echo /etc/systemd/system/hark.service; fi
}

install_unit() {
  say "systemd unit $(unit_path)"
  local src=$SRC/systemd/hark.service dest
  [[ $USER_MODE == 1 ]] && src=$SRC/systemd/hark-user.service
  dest=$(p "$(unit_path)")
  record file "$(unit_path)"
  record unit "$([[ $USER_MODE == 1 ]] && echo user || echo system)"
  if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
    ok "up to date"
    return 0
  fi
  run install -D -m 0644 "$src" "$dest"
  changed "$dest"
  UNIT_CHANGED=1
}

install_link() {
  say "Command /usr/local/bin/hark"
  local link
  link=$(p /usr/local/bin/hark)
  record link /usr/local/bin/hark
  if [[ -L $link && $(readlink "$link") == /opt/hark/venv/bin/hark ]]; then
    ok "present"
    return 0
  fi
  [[ -e $link && ! -L $link ]] && die "$link exists and is not our symlink: remove it or rename it first"
  run mkdir -p "$(dirname "$link")"
  run ln -sfn /opt/hark/venv/bin/hark "$link"
  changed "$link -> /opt/hark/venv/bin/hark"
}

systemctl_() {  # systemctl, or a note (and status 1) when there is none (minimal chroot)
  command -v systemctl >/dev/null 2>&1 || { echo "    (no systemctl here: skipped systemctl $*)"; return 1; }
  run systemctl "$@"
}

enable_unit() {
  say "Enable and start the service"
  if [[ $STAGING == 1 ]]; then
    ok "staging root: enable it in the image with: systemctl --root DIR enable hark.service"
    return 0
  fi
  if [[ $USER_MODE == 1 ]]; then
    # --global works without a running manager; the user's own manager starts it at the next login.
    if [[ ! -e /etc/systemd/user/default.target.wants/hark.service ]]; then
      if systemctl_ --global enable hark.service; then changed "enabled for all desktop sessions"; fi
    else ok "enabled"; fi
    [[ $BOOTED == 1 ]] && { run systemctl --user -M "$DESKTOP_USER@" daemon-reload &&
      run systemctl --user -M "$DESKTOP_USER@" restart hark.service || echo "    note: starts at next login"; }
    return 0
  fi
  if [[ -e /etc/systemd/system/multi-user.target.wants/hark.service ]]; then ok "enabled"; else
    if systemctl_ enable hark.service; then changed "enabled at boot"; fi
  fi
  if [[ $BOOTED == 0 ]]; then
    ok "systemd is not running here (chroot/container build): not started; it starts at boot"
    return 0
  fi
  [[ ${UNIT_CHANGED:-0} == 1 ]] && run systemctl daemon-reload
  if [[ $CHANGES -gt 0 ]] || ! systemctl is-active --quiet hark.service; then
    run systemctl restart hark.service
  else
    ok "running"
  fi
}

run_check() {
  say "hark check"
  if [[ $STAGING == 1 || ${HARK_SETUP_SKIP_DEPS:-0} == 1 || $DRY == 1 ]]; then
    ok "skipped (staging root, dry run or HARK_SETUP_SKIP_DEPS=1)"
    return 0
  fi
  local as=hark
  [[ $USER_MODE == 1 ]] && as=$DESKTOP_USER
  # The service's view: its user, its environment file, its models directory.
  if (set -a && . /etc/hark/env && HARK_MODELS_DIR=/opt/hark/models &&
    exec runuser -u "$as" -- /opt/hark/venv/bin/hark --config /etc/hark/config.toml check); then
    ok "hark check passed"
  else
    echo "    WARNING: hark check reported problems (above). Fix them, then: sudo -u $as HARK_MODELS_DIR=/opt/hark/models hark check" >&2
  fi
}

what_next() {
  local logs="journalctl -u hark -f" restart="sudo systemctl restart hark" status="systemctl status hark"
  if [[ $USER_MODE == 1 ]]; then
    logs="journalctl --user -u hark -f" restart="systemctl --user restart hark" status="systemctl --user status hark"
  fi
  cat <<EOT

What next:
  - Settings: edit ${ROOT}/etc/hark/config.toml, then: $restart
  - API key / MQTT password: ${ROOT}/etc/hark/env (mode 0600); empty key = local answers only
  - Watch it: $logs        Status: $status
  - Audio devices: hark devices        Try it: say "hey jarvis, what time is it?"
  - Remove: sudo $SRC/scripts/setup.sh --uninstall [--purge]
EOT
}

# --- uninstall ----------------------------------------------------------------------------------------------

uninstall() {
  local m kind rest unit_kind="" user="" apt="" lines=() reversed=() i
  m=$(p $MANIFEST)
  [[ -f $m ]] || die "no manifest at $m: nothing here was installed by setup.sh (or it was already removed)"
  say "Uninstalling what $m lists"
  mapfile -t lines <"$m"  # read once: the manifest itself lives in /opt/hark, which goes too
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do reversed+=("${lines[i]}"); done
  for line in "${lines[@]}"; do
    read -r kind rest <<<"$line"
    case $kind in
      unit) unit_kind=$rest ;;
      user) user=$rest ;;
      apt) apt="$apt $rest" ;;
    esac
  done
  stop_unit "$unit_kind"
  for line in "${reversed[@]}"; do
    read -r kind rest <<<"$line"
    case $kind in
      file | link) [[ -e $(p "$rest") || -L $(p "$rest") ]] && run rm -f "$(p "$rest")" ;;
      tree) [[ -e $(p "$rest") ]] && run rm -rf "$(p "$rest")" ;;
      config) if [[ $PURGE == 1 ]]; then run rm -rf "$(p "$rest")"; else echo "    kept $(p "$rest") (--purge removes it)"; fi ;;
    esac
  done
  # Directories setup.sh had to create (a staging root), deepest first, only if nothing else lives there.
  for line in "${reversed[@]}"; do
    read -r kind rest <<<"$line"
    [[ $kind == dir && -d $(p "$rest") ]] && run rmdir --ignore-fail-on-non-empty "$(p "$rest")"
  done
  [[ $BOOTED == 1 ]] && run systemctl daemon-reload
  if [[ -n $user && $STAGING == 0 ]] && id "$user" >/dev/null 2>&1; then run userdel "$user"; fi
  [[ -z $apt ]] || echo "    Debian packages installed by setup were left in place (others may use them):$apt"
  say "Hark removed"
}

stop_unit() {
  [[ -n $1 && $STAGING == 0 ]] || return 0
  command -v systemctl >/dev/null 2>&1 || return 0
  if [[ $1 == user ]]; then
    run systemctl --global disable hark.service || true
    [[ $BOOTED == 1 && -n ${SUDO_USER:-} ]] && { run systemctl --user -M "$SUDO_USER@" stop hark.service || true; }
  elif [[ $BOOTED == 1 ]]; then
    run systemctl disable --now hark.service || true
  else
    run systemctl disable hark.service || true
  fi
}

# --- main ---------------------------------------------------------------------------------------------------

main() {
  parse_args "$@"
  [[ $DRY == 1 ]] && echo "DRY RUN: printing every action; nothing is changed."
  [[ $STAGING == 1 ]] && echo "Staging root $ROOT: paths are prefixed, systemctl and user creation are skipped."
  if [[ $UNINSTALL == 1 ]]; then
    uninstall
    return 0
  fi
  preflight "$@"
  local d missing_dirs=()
  for d in /etc /etc/systemd /etc/systemd/system /etc/systemd/user /opt /usr /usr/lib /usr/lib/sysusers.d /usr/local \
    /usr/local/bin /var /var/lib; do
    [[ -d $(p $d) ]] || missing_dirs+=("$d")
  done
  install_apt
  install_src
  install_venv_and_models
  install_user
  install_state_dir
  install_config
  install_env
  install_unit
  install_link
  enable_unit
  run_check
  for d in "${missing_dirs[@]}"; do [[ -d $(p "$d") ]] && record dir "$d"; done  # ours to remove again
  if [[ $CHANGES -eq 0 ]]; then
    say "Everything was already in place: nothing changed."
  else
    say "Done: $CHANGES change(s)$([[ $DRY == 1 ]] && echo ' would be made')."
  fi
  what_next
}

main "$@"
