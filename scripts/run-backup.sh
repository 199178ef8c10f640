#!/usr/bin/env bash
# Run one dar-backup backup in the image, as the calling user.
#
#   WORKDIR=/path IMAGE=dar-backup:1.0.0 scripts/run-backup.sh -t FULL|DIFF|INCR [-d DEFINITION]
#
# Layout below WORKDIR (default: this script's directory), each overridable:
#   backups/   DAR_BACKUP_DIR          archives, par2 files, catalogs, logs
#   backup.d/  DAR_BACKUP_D_DIR        backup definitions
#   data/      DAR_BACKUP_DATA_DIR     what is backed up (mounted read-only)
#   restore/   DAR_BACKUP_RESTORE_DIR  dar-backup's restore tests
set -euo pipefail

die() {
	printf 'run-backup.sh: %s\n' "$*" >&2
	exit 2
}

usage() {
	sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

flag_for() {
	case $1 in
		FULL) printf -- '-F\n' ;;
		DIFF) printf -- '-D\n' ;;
		INCR) printf -- '-I\n' ;;
		*) die "-t takes FULL, DIFF or INCR, got '$1'" ;;
	esac
}

main() {
	local type="" definition="" opt
	while getopts ":t:d:h" opt; do
		case $opt in
			t) type=$OPTARG ;;
			d) definition=$OPTARG ;;
			h)
				usage
				exit 0
				;;
			*) die "unknown option -$OPTARG (see -h)" ;;
		esac
	done
	[ -n "$type" ] || die "-t FULL|DIFF|INCR is required (see -h)"
	local flag
	flag=$(flag_for "$type")
	[ "$(id -u)" != 0 ] || die "refusing to run as root: run as the user who owns the backups"

	local workdir=${WORKDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
	local backups=${DAR_BACKUP_DIR:-$workdir/backups}
	local definitions=${DAR_BACKUP_D_DIR:-$workdir/backup.d}
	local data=${DAR_BACKUP_DATA_DIR:-$workdir/data}
	local restore=${DAR_BACKUP_RESTORE_DIR:-$workdir/restore}
	[ -d "$data" ] || die "data directory $data does not exist"
	mkdir -p "$backups" "$definitions" "$restore"
	if [ -z "$(ls -A "$definitions")" ]; then
		die "no backup definition in $definitions (docker/backup.d/default backs up all of /data)"
	fi

	local args=("$flag" --log-stdout)
	[ -z "$definition" ] || args+=(-d "$definition")
	exec "${DOCKER:-docker}" run --rm --user "$(id -u):$(id -g)" \
		-v "$data":/data:ro -v "$backups":/backups -v "$definitions":/backup.d -v "$restore":/restore \
		"${IMAGE:-dar-backup:dev}" "${args[@]}"
}

main "$@"
