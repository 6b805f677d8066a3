# What the test scripts need from the machine, and what the user asked to
# skip; source it.
#
# need COMMAND PACKAGE: a command the test needs. When it is missing, the
# Debian package that has it is installed if this user can (as root, or
# through sudo without a password); otherwise the script fails with the
# one command that would install it. Nothing is skipped unless asked.
#
# skipped PART: true if and only if the user asked to skip PART (redis,
# soak, browser, autobahn), with `scripts/test.sh --skip PART` or
# SWITCHBOARD_SKIP=PART[,PART...]; it says so loudly. skip_asked PART
# answers the same without a word.

need() {
  local command="$1" package="$2"
  command -v "$command" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    scripts/apt-install.sh "$package"
    command -v "$command" >/dev/null && return 0
  fi
  echo "FAIL: $command not found. Install it with: sudo apt-get install $package" >&2
  echo "      (or skip what needs it: scripts/test.sh --help)" >&2
  exit 1
}

skip_asked() {
  case ",${SWITCHBOARD_SKIP:-}," in
    *",$1,"*) return 0 ;;
  esac
  return 1
}

skipped() {
  skip_asked "$1" || return 1
  printf '\n!!!!!!!!\n!! SKIPPED, as asked: %s\n!!!!!!!!\n' "$1" >&2
}
