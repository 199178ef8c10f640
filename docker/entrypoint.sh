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

Environment: RUN_AS_UID (default 1000), RUN_AS_GID (default: RUN_AS_UID),
DAR_BACKUP_FIX_PERMS=1 (chown -R /backups, /backup.d and /restore to that user; off by
default: /data is never changed),
DAR_BACKUP_CONFIG_FILE (default /etc/dar-backup/dar-backup.conf; --config-file wins).
USAGE
}

is_number() {
	[[ $1 =~ ^[0-9]+$ ]]
}

# The home directory of a UID if it has a writable one, else /tmp: HOME must never be /root.
home_for() {
	local entry home
	if entry=$(getent passwd "$1"); then
		home=$(cut -d: -f6 <<<"$entry")
		if [ -d "$home" ] && [ -w "$home" ]; then
			printf '%s\n' "$home"
			return
		fi
	fi
	printf '/tmp\n'
}

# A missing directory is the image's to create; an existing one belongs to the user.
create_missing_dirs() {
	local uid=$1 gid=$2 dir
	for dir in "$DATA_DIR" "$BACKUP_DIR" "$BACKUP_D_DIR" "$RESTORE_DIR"; do
		if [ ! -d "$dir" ]; then
			mkdir -p "$dir"
			chown "$uid:$gid" "$dir"
		fi
	done
}

fix_perms_if_asked() {
	local uid=$1 gid=$2
	[ "${DAR_BACKUP_FIX_PERMS:-0}" = 1 ] || return 0
	echo "dar-backup-image: DAR_BACKUP_FIX_PERMS=1: chown -R $uid:$gid $BACKUP_DIR $BACKUP_D_DIR $RESTORE_DIR" >&2
	chown -R "$uid:$gid" "$BACKUP_DIR" "$BACKUP_D_DIR" "$RESTORE_DIR"
}

drop_privileges() {
	local uid=${RUN_AS_UID:-1000} gid
	gid=${RUN_AS_GID:-$uid}
	is_number "$uid" || die 2 "RUN_AS_UID must be a number, got '$uid'"
	is_number "$gid" || die 2 "RUN_AS_GID must be a number, got '$gid'"
	[ "$uid" != 0 ] || die 2 "RUN_AS_UID=0: this image runs backups as a non-root user"
	create_missing_dirs "$uid" "$gid"
	fix_perms_if_asked "$uid" "$gid"
	exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs -- "${BASH_SOURCE[0]}" "$@"
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

# Definitions whose catalog database does not exist yet, one a line. Reads the config as
# dar-backup's ConfigSettings does (MANAGER_DB_DIR, expanded, else BACKUP_DIR) with the standard
# library only: importing dar_backup here would cost about a second on every start.
missing_catalogs() {
	python3 - "$1" <<'PY'
import configparser, os, sys
config = configparser.ConfigParser(inline_comment_prefixes=["#"])
if not config.read(sys.argv[1]):
    sys.exit(1)
dirs = config["DIRECTORIES"]
db_dir = os.path.expanduser(os.path.expandvars(dirs["MANAGER_DB_DIR"])) if dirs.get("MANAGER_DB_DIR") else dirs["BACKUP_DIR"]
definitions = dirs["BACKUP.D_DIR"]
for name in sorted(os.listdir(definitions)):
    if os.path.isfile(os.path.join(definitions, name)) and not os.path.exists(os.path.join(db_dir, name + ".db")):
        print(name)
PY
}

# Only missing catalogs are created: `manager --create-db` over existing ones runs
# `dar_manager --check`, and a failed check moves the catalog aside. That stays the user's call.
ensure_catalogs() {
	local config=$1 missing definition out
	missing=$(missing_catalogs "$config") || die 127 "cannot read the config file $config"
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
	ensure_catalogs "$config"
}

main() {
	if [ $# -eq 0 ]; then
		usage
		exit 0
	fi
	if [ "${1:0:1}" = - ]; then
		set -- dar-backup "$@"
	fi
	if [ "$(id -u)" = 0 ]; then
		drop_privileges "$@"
	fi
	HOME=$(home_for "$(id -u)")
	export HOME
	if [ "$1" = dar-backup ] && ! asks_only_for_help "$@"; then
		run_dar_backup_checks "${@:2}"
	fi
	exec "$@"
}

main "$@"
