#!/usr/bin/env bash
# Run one dar-backup backup in the image, as the calling user.
#
#   WORKDIR=/path IMAGE=dar-backup:1.0.0 scripts/run-backup.sh -t FULL|DIFF|INCR [-d DEFINITION]
#   scripts/run-backup.sh --backup-type FULL|DIFF|INCR [--backup-definition DEFINITION]
#   scripts/run-backup.sh -h|--help
#
# Layout below WORKDIR (default: this script's directory), each overridable:
#   backups/   DAR_BACKUP_DIR          archives, par2 files, catalogs, logs
#   backup.d/  DAR_BACKUP_D_DIR        backup definitions ('default' is created when missing;
#                                      without -d every definition runs)
#   data/      DAR_BACKUP_DATA_DIR     what is backed up (mounted read-only)
#   restore/   DAR_BACKUP_RESTORE_DIR  dar-backup's restore tests
# IMAGE defaults to dar-backup:dev; DOCKER_PULL=true pulls it before every run, false (the
# default) only when it is absent. Root is refused: the image's RUN_AS_UID=0 is for that.
set -euo pipefail

# The image's docker/backup.d/default: everything below /data.
DEFAULT_DEFINITION='# The image'"'"'s default backup definition: everything below /data.
# Ordered selection: the options below are read top to bottom.
-am
-R /
-g data
# Compression level.
-z5
# Never overwrite an existing archive.
-n
--slice 10G
# Skip directories marked as caches (CACHEDIR.TAG).
--cache-directory-tagging
'

die() {
	printf 'run-backup.sh: %s\n' "$*" >&2
	exit 2
}

say() {
	printf 'run-backup.sh: %s\n' "$*"
}

usage() {
	sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

flag_for() {
	case $1 in
		FULL) printf -- '-F\n' ;;
		DIFF) printf -- '-D\n' ;;
		INCR) printf -- '-I\n' ;;
		*) die "-t/--backup-type takes FULL, DIFF or INCR, got '$1'" ;;
	esac
}

pull_policy() {
	case ${DOCKER_PULL:-false} in
		true) printf 'always\n' ;;
		false) printf 'missing\n' ;;
		*) die "DOCKER_PULL must be true or false, got '$DOCKER_PULL'" ;;
	esac
}

# A directory the container gets; `/` would hand the whole host to it.
checked_dir() {
	local name=$1 path=$2
	[ "$(realpath -m -- "$path")" != / ] || die "refusing / as $name"
	printf '%s\n' "$path"
}

# Creates backup.d/default when it is missing and would be run: named with -d, or no -d
# (every definition runs) and the directory holds none.
ensure_default_definition() {
	local definitions=$1 definition=$2
	[ ! -e "$definitions/default" ] || return 0
	if [ "$definition" = default ] || { [ -z "$definition" ] && [ -z "$(ls -A "$definitions")" ]; }; then
		printf '%s' "$DEFAULT_DEFINITION" >"$definitions/default"
		say "created $definitions/default (backs up all of the data directory)"
	fi
}

main() {
	local type="" definition="" named=false
	while [ $# -gt 0 ]; do
		case $1 in
			-t | --backup-type)
				[ $# -ge 2 ] || die "$1 needs FULL, DIFF or INCR"
				type=$2
				shift
				;;
			--backup-type=*) type=${1#*=} ;;
			-d | --backup-definition)
				[ $# -ge 2 ] || die "$1 needs a definition name"
				definition=$2 named=true
				shift
				;;
			--backup-definition=*) definition=${1#*=} named=true ;;
			-h | --help)
				usage
				exit 0
				;;
			*) die "unknown option '$1' (see --help)" ;;
		esac
		shift
	done
	[ -n "$type" ] || die "-t/--backup-type FULL|DIFF|INCR is required (see --help)"
	[ "$named" = false ] || [ -n "$definition" ] || die "-d/--backup-definition needs a definition name"
	local flag policy
	flag=$(flag_for "$type")
	policy=$(pull_policy)
	[ "$(id -u)" != 0 ] || die "refusing to run as root: run as the user who owns the backups"

	local workdir backups definitions data restore
	workdir=${WORKDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
	backups=$(checked_dir DAR_BACKUP_DIR "${DAR_BACKUP_DIR:-$workdir/backups}")
	definitions=$(checked_dir DAR_BACKUP_D_DIR "${DAR_BACKUP_D_DIR:-$workdir/backup.d}")
	data=$(checked_dir DAR_BACKUP_DATA_DIR "${DAR_BACKUP_DATA_DIR:-$workdir/data}")
	restore=$(checked_dir DAR_BACKUP_RESTORE_DIR "${DAR_BACKUP_RESTORE_DIR:-$workdir/restore}")
	[ -d "$data" ] || die "data directory $data does not exist"
	mkdir -p "$backups" "$definitions" "$restore"
	ensure_default_definition "$definitions" "$definition"

	local args=("$flag" --log-stdout)
	[ -z "$definition" ] || args+=(-d "$definition")
	exec "${DOCKER:-docker}" run --rm --pull "$policy" --user "$(id -u):$(id -g)" \
		-v "$data":/data:ro -v "$backups":/backups -v "$definitions":/backup.d -v "$restore":/restore \
		"${IMAGE:-dar-backup:dev}" "${args[@]}"
}

main "$@"
