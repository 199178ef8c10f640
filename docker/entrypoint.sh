#!/usr/bin/env bash
# Entrypoint of the dar-backup image, after docker-library's entrypoints: started as root it
# prepares what the image owns and re-executes itself as RUN_AS_UID:RUN_AS_GID; started as that
# user (or with --user) it checks the config, creates missing catalogs and execs the command.
# Arguments pass through as "$@", never re-parsed by a shell.
set -Eeuo pipefail

die() {
	local code=$1
	shift
	printf 'dar-backup-image: %s\n' "$*" >&2
	exit "$code"
}

usage() {
	cat <<'USAGE'
dar-backup image: dar, par2 and dar-backup, run as a non-root user.

  docker run --rm -e RUN_AS_UID="$(id -u)" \
    -v /path/to/data:/data:ro -v /path/to/backups:/backups \
    -v /path/to/backup.d:/backup.d -v /path/to/restore:/restore \
    IMAGE -F --log-stdout            FULL backup (-D: DIFF, -I: INCR)

  IMAGE --list | --list-contents ARCHIVE | -r ARCHIVE --restore-dir DIR
  IMAGE dar|par2|manager|bash ...     run another program of the image as the same user

Environment: RUN_AS_UID (default 1000; 0 runs as root, e.g. to back up and restore
ownership), RUN_AS_GID (default: RUN_AS_UID); `docker run --user UID:GID` wins, and
`--user 0:GID` with a GID other than 0 runs as root too. DAR_BACKUP_FIX_PERMS=1 (chown -R
/backups and /restore to that user; off by default: /data and /backup.d are never changed).
As root, a config, backup definition or catalog that a non-root user can change is refused
(exit 126): make it root's, or set DAR_BACKUP_TRUST_USER_FILES=1 to trust it.
DAR_BACKUP_CONFIG_FILE (default /etc/dar-backup/dar-backup.conf; --config-file wins).
USAGE
}

# A UID or GID as the kernel takes it: decimal, 0 to 4294967294 (4294967295 is (uid_t)-1, which
# setresuid reads as "unchanged", and setpriv cuts larger numbers down to 32 bits), with leading
# zeros dropped so that the shell's "is it 0" and setpriv agree. The number goes to REPLY.
parse_id() {
	local name=$1 value=$2 digits
	digits=${value#"${value%%[!0]*}"}
	if [[ ! $value =~ ^[0-9]+$ ]] || [ ${#digits} -gt 10 ] || ((10#${digits:-0} > 4294967294)); then
		die 2 "$name must be a number from 0 to 4294967294, got '$value'"
	fi
	REPLY=$((10#${digits:-0}))
}

# The home directory of a UID if it has a writable one, else /tmp: HOME must never be /root.
# Read from /etc/passwd by bash itself, as getent would (the image's NSS is `passwd: files`):
# every program forked here is paid at every start.
home_for() {
	local uid home
	while IFS=: read -r _ _ uid _ _ home _; do
		[ "$uid" = "$1" ] || continue
		if [ -d "$home" ] && [ -w "$home" ]; then
			printf '%s\n' "$home"
			return
		fi
		break
	done </etc/passwd
	printf '/tmp\n'
}

# A missing directory is the image's to create; an existing one belongs to the user. Made as root,
# maybe inside a directory a user can write to: only the last name is made and given away, never
# through a symbolic link (a dangling one is refused; `mkdir` without -p does not follow one put
# there before it, `chown -h` changes a link put there after it, not what the link points to).
create_missing_dirs() {
	local uid=$1 gid=$2 dir parent out
	for dir in "$DATA_DIR" "$BACKUP_DIR" "$BACKUP_D_DIR" "$RESTORE_DIR"; do
		[ ! -d "$dir" ] || continue
		[ ! -L "$dir" ] || die 1 "$dir is a symbolic link to no directory: remove it, or make it a directory"
		parent=${dir%/*}
		mkdir -p -- "${parent:-/}"
		out=$(mkdir -- "$dir" 2>&1) || die 1 "could not create $dir: ${out##*: }"
		chown -h -- "$uid:$gid" "$dir"
	done
}

# The backup definitions are never handed to the user: as option files of dar (-E runs a command)
# they must stay root's for a root run to trust them.
fix_perms_if_asked() {
	local uid=$1 gid=$2
	[ "${DAR_BACKUP_FIX_PERMS:-0}" = 1 ] || return 0
	echo "dar-backup-image: DAR_BACKUP_FIX_PERMS=1: chown -R $uid:$gid $BACKUP_DIR $RESTORE_DIR" >&2
	chown -R "$uid:$gid" "$BACKUP_DIR" "$RESTORE_DIR"
}

# Started as root: prepare for RUN_AS_UID:RUN_AS_GID, then become that user by re-executing
# this script. Root stays root only when asked for, and says so: with RUN_AS_UID=0, or with
# `docker run --user 0:GID` and a GID other than 0. (`--user 0` and `--user 0:0` start the image
# as its default start does, as root with GID 0: Docker sets nothing else that tells them apart.)
become_run_as_user() {
	local uid gid asked key real _
	while read -r key real _; do
		[ "$key" != Gid: ] || break
	done </proc/self/status
	if [ "$key" = Gid: ] && [ "$real" != 0 ]; then
		uid=0 gid=$real asked="docker run --user 0:$real"
	else
		parse_id RUN_AS_UID "${RUN_AS_UID:-1000}"
		uid=$REPLY asked="RUN_AS_UID=${RUN_AS_UID:-}"
		parse_id RUN_AS_GID "${RUN_AS_GID:-$uid}"
		gid=$REPLY
	fi
	create_missing_dirs "$uid" "$gid"
	fix_perms_if_asked "$uid" "$gid"
	if [ "$uid" = 0 ]; then
		echo "dar-backup-image: $asked: running as root (GID $gid), as asked" >&2
		RUN_AS_ROOT_GID=$gid
		return
	fi
	exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs -- "${BASH_SOURCE[0]}" "$@"
}

# The program, as root with the chosen group when root was asked for, else as this user.
exec_command() {
	if [ -n "${RUN_AS_ROOT_GID:-}" ]; then
		exec setpriv --regid="$RUN_AS_ROOT_GID" --clear-groups -- "$@"
	fi
	exec "$@"
}

# The config dar-backup will read: the caller's -c/--config-file (argparse also takes a
# prefix such as --config), else DAR_BACKUP_CONFIG_FILE.
config_in_args() {
	local config=${DAR_BACKUP_CONFIG_FILE:-}
	while [ $# -gt 0 ]; do
		case $1 in
			--config*=*) config=${1#*=} ;;
			-c | --config*)
				config=${2:-}
				shift || true
				;;
		esac
		shift || true
	done
	printf '%s\n' "$config"
}

asks_only_for_help() {
	local arg
	for arg; do
		case $arg in -h | --help | -v | --version) return 0 ;; esac
	done
	return 1
}

# check_files CONFIG COMMAND DEFINITION, in a subshell (it execs): what a start reads, checked by
# one interpreter. As root (unless DAR_BACKUP_TRUST_USER_FILES=1) it refuses with one line and
# exit 126 a config, backup definition (dar reads it as options; -E runs a command) or catalog
# that a non-root user can change. COMMAND "none" (not dar-backup) stops there. "backup" or
# "other" (see backup_request) go on to check the definitions against the config and print those
# whose catalog database does not exist yet, one a line; a backup with no definition to run fails
# with one line, where dar-backup itself would exit 0 having done nothing.
# The interpreter runs nothing a user can change: isolated (-I: neither the working directory
# nor a user site on sys.path, no PYTHON* variables), without site-packages (-S) or bytecode
# writes (-B), from /. It reads the config as dar-backup's ConfigSettings does (MANAGER_DB_DIR,
# expanded, else BACKUP_DIR) with the standard library only: importing dar_backup here would
# cost about a second a start.
check_files() {
	local cwd=$PWD as_root=no
	if [ -n "${RUN_AS_ROOT_GID:-}" ] && [ "${DAR_BACKUP_TRUST_USER_FILES:-0}" != 1 ]; then
		as_root=yes
	fi
	cd /
	exec /usr/bin/python3 -I -S -B - "$cwd" "$@" "$as_root" <<'PY'
import configparser, os, stat, sys
cwd, path, command, wanted, as_root = sys.argv[1:6]

def fail(message, code=127):
    print(f"dar-backup-image: {message}", file=sys.stderr)
    sys.exit(code)

def here(path):
    """A path of the config or the command line, as the command's working directory resolves it."""
    return os.path.join(cwd, path)

def files_in(directory, suffix=""):
    names = os.listdir(here(directory))
    return sorted(n for n in names if n.endswith(suffix) and os.path.isfile(here(os.path.join(directory, n))))

def open_to_others(status):
    """How a non-root user could change a file or directory with this status, or None."""
    if status.st_uid != 0:
        return f"is owned by UID {status.st_uid}"
    if status.st_mode & 0o022:
        whom = "its group" if status.st_mode & 0o020 else "others"
        return f"is writable by {whom} (mode {stat.S_IMODE(status.st_mode):o})"
    return None

def who_can_change(path):
    """The first directory on the way to PATH, or PATH itself, that a non-root user could change
    (renaming what it holds is changing it), and how; None when only root can. Symbolic links are
    followed as the kernel follows them, each one's target checked on its own way there."""
    here, pending, links = "/", path.split("/")[::-1], 0
    why = open_to_others(os.stat("/"))
    if why:
        return "/", why
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            here = os.path.dirname(here)
            continue
        there = os.path.join(here, name)
        try:
            status = os.lstat(there)
        except OSError as error:
            return there, f"cannot be checked ({error.strerror})"
        if stat.S_ISLNK(status.st_mode):
            links += 1
            if links > 40:
                return there, "is a loop of symbolic links"
            target = os.readlink(there)
            here = "/" if target.startswith("/") else here
            pending += target.split("/")[::-1]
            continue
        why = open_to_others(status)
        if why:
            return there, why
        here = there
    return None

def refuse_what_users_can_change(trusted):
    for what, path in trusted:
        found = who_can_change(here(path))
        if found:
            culprit, why = found
            fail(f"refusing to run as root: {what} {path} can be changed by a non-root user, as {culprit} {why}: "
                 f"make {culprit} root's and writable by root alone (chown root, chmod go-w), "
                 "or set DAR_BACKUP_TRUST_USER_FILES=1 to trust whoever can write to it", 126)

config = configparser.ConfigParser(inline_comment_prefixes=["#"])
if not config.read(here(path)):
    if command == "none":
        sys.exit(0)
    fail(f"cannot read the config file {path}")
dirs = config["DIRECTORIES"] if config.has_section("DIRECTORIES") else {}
backup_dir = dirs.get("BACKUP_DIR", "")
db_dir = os.path.expanduser(os.path.expandvars(dirs["MANAGER_DB_DIR"])) if dirs.get("MANAGER_DB_DIR") else backup_dir
definitions_dir = dirs.get("BACKUP.D_DIR", "")
if as_root == "yes":
    # What root reads as instructions (the config's PREREQ and POSTREQ run commands), and the
    # archive directory: root restores from its archives and writes them and the log there.
    trusted = [("the config file", path)]
    if definitions_dir and os.path.isdir(here(definitions_dir)):
        trusted.append(("the backup definitions directory", definitions_dir))
        trusted += [("the backup definition", os.path.join(definitions_dir, n)) for n in files_in(definitions_dir)]
    if db_dir and os.path.isdir(here(db_dir)):
        trusted.append(("the catalog directory", db_dir))
        trusted += [("the catalog database", os.path.join(db_dir, n)) for n in files_in(db_dir, ".db")]
    if backup_dir and backup_dir != db_dir and os.path.isdir(here(backup_dir)):
        trusted.append(("the archive directory", backup_dir))
    refuse_what_users_can_change(trusted)
if command == "none":
    sys.exit(0)
example = "the image's example is /usr/share/dar-backup/backup.d/default"
if not os.path.isdir(here(definitions_dir)):
    fail(f"the backup definitions directory {definitions_dir} does not exist: mount one there ({example})")
try:
    names = files_in(definitions_dir)
except PermissionError:
    fail(f"the backup definitions directory {definitions_dir} is not readable by UID {os.getuid()}: "
         "make it readable by that user")
unreadable = [n for n in names if not os.access(here(os.path.join(definitions_dir, n)), os.R_OK)]
if unreadable:
    fail(f"backup definition {os.path.join(definitions_dir, unreadable[0])} is not readable by UID {os.getuid()}")
if command == "backup" and wanted and wanted not in names:
    fail(f"no backup definition '{wanted}' in {definitions_dir}: put a file named '{wanted}' there ({example})")
if command == "backup" and not names:
    fail(f"no backup definition in {definitions_dir}, so there is nothing to back up: "
         f"put one there, e.g. a file named 'default' ({example})")
for name in names:
    if not os.path.exists(here(os.path.join(db_dir, name + ".db"))):
        print(name)
PY
}

# "backup DEFINITION" when the arguments ask dar-backup for a FULL, DIFF or INCR backup
# (DEFINITION empty when none is named), else "other". Long options may be abbreviated, as
# argparse allows.
backup_request() {
	local command=other definition=""
	while [ $# -gt 0 ]; do
		case $1 in
			-F | -D | -I | --fu* | --di* | --in*) command=backup ;;
			--b*=*) definition=${1#*=} ;;
			-d | --b*)
				definition=${2:-}
				shift || true
				;;
			-d?*) definition=${1#-d} ;;
		esac
		shift || true
	done
	printf '%s %s\n' "$command" "$definition"
}

# Only missing catalogs are created: `manager --create-db` over existing ones runs
# `dar_manager --check`, and a failed check moves the catalog aside. That stays the user's call.
ensure_catalogs() {
	local config=$1 request missing definition out
	shift
	request=$(backup_request "$@")
	missing=$(check_files "$config" "${request%% *}" "${request#* }") || exit
	while IFS= read -r definition; do
		[ -n "$definition" ] || continue
		if ! out=$(manager --create-db --backup-def "$definition" --config-file "$config" 2>&1); then
			printf '%s\n' "$out" >&2
			die 1 "could not create the catalog database for '$definition'"
		fi
	done <<<"$missing"
}

run_dar_backup_checks() {
	local config
	config=$(config_in_args "$@")
	[ -n "$config" ] || die 127 "no config file: set DAR_BACKUP_CONFIG_FILE or pass --config-file"
	[ -f "$config" ] || die 127 "config file not found: $config"
	ensure_catalogs "$config" "$@"
}

# A root run of anything else (another program, or dar-backup asked only for help) is checked
# for what root trusts all the same: a shell may start dar-backup, and manager reads the catalogs.
# dar-backup's programs read DAR_BACKUP_CONFIG_FILE's config unless given their own --config-file.
check_root_trust() {
	local config=${DAR_BACKUP_CONFIG_FILE:-}
	case $1 in
		dar-backup | manager | cleanup | clean-log) config=$(config_in_args "${@:2}") ;;
	esac
	(check_files "$config" none "") || exit
}

main() {
	if [ $# -eq 0 ]; then
		usage
		exit 0
	fi
	if [ "${1:0:1}" = - ]; then
		set -- dar-backup "$@"
	fi
	# EUID is what `id -u` prints, without forking it.
	if [ "$EUID" = 0 ]; then
		become_run_as_user "$@"
	fi
	HOME=$(home_for "$EUID")
	export HOME
	if [ "$1" = dar-backup ] && ! asks_only_for_help "$@"; then
		run_dar_backup_checks "${@:2}"
	elif [ -n "${RUN_AS_ROOT_GID:-}" ]; then
		check_root_trust "$@"
	fi
	exec_command "$@"
}

main "$@"
