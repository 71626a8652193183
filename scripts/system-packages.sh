# Sourced by `.ci/run` and the test scripts.

# `install_missing PACKAGE...` installs, with apt and sudo where not run as root, those of the
# Debian packages that are not installed yet.
install_missing() {
    local missing=() package sudo=""
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    printf '\n== installing %s\n' "${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# What `scripts/test.sh` needs from the system: Mesa's software Vulkan driver (lavapipe, the
# device the GPU tests run on without a GPU) and OpenGL drivers (llvmpipe through EGL),
# Chromium, Python's venv. Fails, naming the package, when lavapipe is still not registered
# with the Vulkan loader afterwards.
install_test_packages() {
    install_missing mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri \
        python3-venv chromium
    compgen -G '/usr/share/vulkan/icd.d/lvp_icd.*.json' >/dev/null || {
        echo "error: Mesa's lavapipe is not registered with the Vulkan loader" \
            "(no /usr/share/vulkan/icd.d/lvp_icd.*.json) although mesa-vulkan-drivers is" \
            "installed; the GPU tests need it" >&2
        return 1
    }
}
