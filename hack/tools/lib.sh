# shellcheck shell=bash
# Shared by hack/tools/*: builds a Go tool from a pinned module (hack/tools/<name>-mod) into a version-keyed
# cache, once, and prints the binary's path as the last line of stdout. Sourced, never executed.

# go_tool NAME MODULE PACKAGE [LDFLAGS]: MODULE is the module whose version in <name>-mod/go.mod names the
# tool, PACKAGE its main package.
go_tool() {
	local name=$1 module=$2 package=$3 ldflags=${4:-}
	local mod
	mod="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$name-mod"
	local version key cache_root dir bin
	version=$(awk -v m="$module" '$1 == m { print $2 }' "$mod/go.mod")
	[[ -n $version ]] || { echo "hack/tools/$name: $module is not pinned in $mod/go.mod" >&2; return 1; }
	# The key covers every pinned input, so a bump in go.mod rebuilds and an unchanged tree never does.
	key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
	cache_root=${FLAGGER_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flagger-rs}
	dir="$cache_root/tools/$name-$version-$key"
	bin="$dir/$name"
	if [[ -x $bin ]]; then
		echo "$bin"
		return 0
	fi

	mkdir -p "$dir"
	# A test and a developer may call this at once: one build. The lock fd closes with the subshell, and
	# every step says `|| exit 1` since errexit is off inside a subshell followed by `||`.
	(
		exec 9>"$dir/.build.lock" || exit 1
		flock 9 || exit 1
		[[ -x $bin ]] && exit 0
		command -v go >/dev/null || { echo "hack/tools/$name: Go is required to build $name $version" >&2; exit 1; }
		echo "hack/tools/$name: building $name $version (once)" >&2
		local t0=$SECONDS
		# Other engineers compile on the same cores.
		(cd "$mod" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" \
			nice -n 10 go build -ldflags="-s -w ${ldflags//@VERSION@/$version}" -o "$bin.partial" "$package") || exit 1
		mv "$bin.partial" "$bin" || exit 1
		echo "hack/tools/$name: built in $((SECONDS - t0))s" >&2
	) || return 1
	echo "$bin"
}
