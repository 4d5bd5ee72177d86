"""scripts/setup.sh for real into a staging root (--root DIR): files, modes, idempotency, uninstall, refusals.

HARK_SETUP_SKIP_DEPS=1 skips the virtualenv and model downloads (scripts/install-deps, scripts/fetch-models,
`hark check`): those run for real in scripts/test-debootstrap. The script runs from a copy of the checkout so
a test can change the shipped default config.toml the way an upgrade does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-abcdefghijklmnop0123456789"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The repository's tracked files (as in a fresh clone) with a config.toml."""
    src = tmp_path / "src"
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], check=True, capture_output=True, text=True
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    if not (src / "config.toml").exists():
        (src / "config.toml").write_text('[logging]\nlevel = "info"\n')
    return src


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def setup(src: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    full_env.update(HARK_SETUP_SKIP_DEPS="1", **env)
    return subprocess.run(
        ["bash", str(src / "scripts" / "setup.sh"), *args],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def install(src: Path, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = setup(src, "--root", str(root), "--no-apt", *args, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_dry_run_prints_actions_and_changes_nothing(checkout: Path, root: Path) -> None:
    result = install(checkout, root, "--dry-run")
    assert "DRY RUN" in result.stdout
    for action in ("install -D -m 0644", "write " + str(root / "etc/hark/env"), "ln -sfn"):
        assert action in result.stdout
    assert tree(root) == set()


def test_dry_run_on_this_machine_touches_nothing(checkout: Path) -> None:
    before = Path("/opt/hark").exists(), Path("/etc/hark").exists()
    result = setup(checkout, "--dry-run", "--no-apt")
    assert result.returncode == 0, result.stderr
    assert "useradd" in result.stdout or "user hark exists" in result.stdout
    assert (Path("/opt/hark").exists(), Path("/etc/hark").exists()) == before


def test_install_creates_files_with_safe_modes(checkout: Path, root: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    result = install(checkout, root, "--api-key-file", str(key_file))
    assert KEY not in result.stdout + result.stderr
    env = root / "etc/hark/env"
    assert mode(env) == 0o600
    assert f"OPENAI_API_KEY='{KEY}'" in env.read_text()
    assert mode(root / "etc/hark/config.toml") == 0o644
    assert (root / "etc/hark/config.toml").read_bytes() == (checkout / "config.toml").read_bytes()
    assert mode(root / "var/lib/hark") == 0o700
    unit = root / "etc/systemd/system/hark.service"
    assert unit.read_bytes() == (REPO / "systemd/hark.service").read_bytes()
    assert os.readlink(root / "usr/local/bin/hark") == "/opt/hark/venv/bin/hark"
    assert (root / "opt/hark/src/daemon/config/settings.py").exists()
    assert not (root / "opt/hark/src/.git").exists()
    assert "m hark audio" in (root / "usr/lib/sysusers.d/hark.conf").read_text()


def test_second_run_changes_nothing(checkout: Path, root: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    install(checkout, root, "--api-key-file", str(key_file))
    snapshot = {p: p.lstat().st_mtime_ns for p in root.rglob("*")}
    again = install(checkout, root, "--api-key-file", str(key_file))
    assert "nothing changed" in again.stdout
    assert "changed:" not in again.stdout
    assert {p: p.lstat().st_mtime_ns for p in root.rglob("*")} == snapshot


def test_loosened_env_mode_is_repaired(checkout: Path, root: Path) -> None:
    install(checkout, root)
    (root / "etc/hark/env").chmod(0o644)
    install(checkout, root)
    assert mode(root / "etc/hark/env") == 0o600


def test_edited_config_is_kept_and_new_default_goes_beside(checkout: Path, root: Path) -> None:
    install(checkout, root)
    config = root / "etc/hark/config.toml"
    config.write_text(config.read_text() + "\n# my edit\n")
    (checkout / "config.toml").write_text((checkout / "config.toml").read_text() + "\n# upgrade\n")
    result = install(checkout, root)
    assert "# my edit" in config.read_text()
    assert (root / "etc/hark/config.toml.new").read_text().endswith("# upgrade\n")
    assert "config.toml.new" in result.stdout and "you edited" in result.stdout
    assert "nothing changed" in install(checkout, root).stdout


def test_untouched_config_follows_upgrades(checkout: Path, root: Path) -> None:
    install(checkout, root)
    (checkout / "config.toml").write_text((checkout / "config.toml").read_text() + "\n# upgrade\n")
    install(checkout, root)
    assert (root / "etc/hark/config.toml").read_text().endswith("# upgrade\n")
    assert not (root / "etc/hark/config.toml.new").exists()


def test_uninstall_removes_everything_but_config_and_purge_removes_that(checkout: Path, root: Path) -> None:
    install(checkout, root)
    result = setup(checkout, "--root", str(root), "--uninstall")
    assert result.returncode == 0, result.stderr
    assert tree(root) == {"etc", "etc/hark", "etc/hark/config.toml", "etc/hark/env"}
    install(checkout, root)
    result = setup(checkout, "--root", str(root), "--uninstall", "--purge")
    assert result.returncode == 0, result.stderr
    assert tree(root) == {"etc"}  # /etc/hark is gone; /etc predates the second install, so it stays


def test_uninstall_without_install_says_so(checkout: Path, root: Path) -> None:
    result = setup(checkout, "--root", str(root), "--uninstall")
    assert result.returncode == 1
    assert "no manifest" in result.stderr


def test_user_mode_installs_user_unit_with_env_owned_by_the_desktop_user(checkout: Path, root: Path) -> None:
    install(checkout, root, "--user", SUDO_USER="nobody")
    assert (root / "etc/systemd/user/hark.service").read_bytes() == (REPO / "systemd/hark-user.service").read_bytes()
    assert not (root / "etc/systemd/system/hark.service").exists()
    assert not (root / "var/lib/hark").exists()
    assert (root / "etc/hark/env").stat().st_uid == int(
        subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True, check=True).stdout
    )


def test_user_mode_needs_the_sudo_user(checkout: Path, root: Path) -> None:
    result = setup(checkout, "--root", str(root), "--no-apt", "--user")
    assert result.returncode == 1
    assert "--user installs for the desktop user" in result.stderr


def test_refuses_unsupported_os(checkout: Path, root: Path, tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=fedora\nPRETTY_NAME="Fedora Linux 40"\n')
    result = setup(checkout, "--root", str(root), "--no-apt", HARK_SETUP_OS_RELEASE=str(os_release))
    assert result.returncode == 1
    assert "unsupported OS 'Fedora Linux 40'" in result.stderr
    assert "Debian, Raspberry Pi OS or Ubuntu" in result.stderr
    assert tree(root) == set()


def test_accepts_raspberry_pi_os_and_ubuntu(checkout: Path, root: Path, tmp_path: Path) -> None:
    for text in ("ID=raspbian\nID_LIKE=debian\n", 'ID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 22.04"\n'):
        os_release = tmp_path / "os-release"
        os_release.write_text(text)
        install(checkout, root, "--dry-run", HARK_SETUP_OS_RELEASE=str(os_release), HARK_SETUP_ARCH="arm64")


@pytest.mark.parametrize("arch", ["armhf", "i386"])
def test_refuses_32_bit_userland(checkout: Path, root: Path, arch: str) -> None:
    result = setup(checkout, "--root", str(root), "--no-apt", HARK_SETUP_ARCH=arch)
    assert result.returncode == 1
    assert "no onnxruntime wheels for 32-bit" in result.stderr
    assert "64-bit Raspberry Pi OS" in result.stderr


def test_refuses_old_python(checkout: Path, root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    result = setup(checkout, "--root", str(root), "--no-apt", HARK_SETUP_PYTHON=str(fake))
    assert result.returncode == 1
    assert "Python 3.9 found" in result.stderr and "needs Python 3.10" in result.stderr


def test_bad_inputs_are_named(checkout: Path, root: Path, tmp_path: Path) -> None:
    result = setup(checkout, "--frobnicate")
    assert result.returncode == 2 and "unknown option '--frobnicate'" in result.stderr
    missing = tmp_path / "nope"
    result = setup(checkout, "--root", str(root), "--no-apt", "--api-key-file", str(missing))
    assert result.returncode == 1 and f"cannot read {missing}" in result.stderr
    result = setup(checkout, "--root", str(tmp_path / "absent"))
    assert result.returncode == 1 and "not a directory" in result.stderr
    result = setup(checkout, "--purge")
    assert result.returncode == 1 and "--purge only goes with --uninstall" in result.stderr
