#!/usr/bin/env bash
# Keep rtmbench run files on a branch of their own and gate runs against them (docs/ci.md).
#
#   tools/ci_history.sh fetch DIR            the results branch's run files into DIR (created;
#                                            empty while the branch does not exist yet)
#   tools/ci_history.sh gate RUN DIR [ARG..] rtmbench gate RUN --history DIR ARG..; its exit
#                                            code (0 ok, 1 regression, 2 unusable input)
#   tools/ci_history.sh append RUN           add the run file RUN to the results branch and
#                                            push it; a push that lost a race is retried
#
# Settings (environment): RTMBENCH_RESULTS_BRANCH (default rtmbench-results), RTMBENCH_REMOTE
# (default origin), RTMBENCH (the command, default "rtmbench"; e.g. "python -m rtmbench").
#
# The branch holds only run files, one commit per run, and is only ever appended to: a run file
# already there with the same content is left as it is, one with other content is refused.
# Commits are made with git's plumbing (a private index), so the checkout, its HEAD and its
# index are never touched.
set -euo pipefail

BRANCH=${RTMBENCH_RESULTS_BRANCH:-rtmbench-results}
REMOTE=${RTMBENCH_REMOTE:-origin}
read -r -a RTMBENCH_CMD <<< "${RTMBENCH:-rtmbench}"
TRACKING="refs/remotes/$REMOTE/$BRANCH"

die() { echo "ci_history: $*" >&2; exit 2; }

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Fetch the branch into its remote-tracking ref; false when the remote has no such branch.
fetch_branch() {
    if git ls-remote --exit-code --heads "$REMOTE" "$BRANCH" > /dev/null; then
        git fetch --quiet --no-tags "$REMOTE" "+refs/heads/$BRANCH:$TRACKING"
    else
        local status=$?
        [ "$status" -eq 2 ] || die "cannot reach remote '$REMOTE' (git ls-remote exit $status)"
        git update-ref -d "$TRACKING" 2> /dev/null || true
        return 1
    fi
}

cmd_fetch() {
    [ $# -eq 1 ] || usage
    local dir=$1
    mkdir -p "$dir"
    if fetch_branch; then
        git archive --format=tar "$TRACKING" | tar -x -C "$dir"
        echo "ci_history: $(find "$dir" -maxdepth 1 -name '*.jsonl' | wc -l) run file(s) of" \
             "branch $BRANCH in $dir"
    else
        echo "ci_history: no branch $BRANCH on $REMOTE yet: an empty history in $dir"
    fi
}

cmd_gate() {
    [ $# -ge 2 ] || usage
    local run=$1 dir=$2
    shift 2
    [ -f "$run" ] || die "no run file $run"
    [ -d "$dir" ] || die "no history directory $dir (run '$0 fetch $dir' first)"
    local status=0
    "${RTMBENCH_CMD[@]}" gate "$run" --history "$dir" "$@" || status=$?
    return "$status"
}

cmd_append() {
    [ $# -eq 1 ] || usage
    local run=$1 name
    [ -f "$run" ] || die "no run file $run"
    name=$(basename "$run")
    case "$name" in
        *.jsonl) ;;
        *) die "$run is not a run file (.jsonl)" ;;
    esac
    local blob tmp attempt
    blob=$(git hash-object -w -- "$run")
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-rtmbench CI} \
           GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-rtmbench-ci@localhost} \
           GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-rtmbench CI} \
           GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-rtmbench-ci@localhost}
    for attempt in 1 2 3 4 5; do
        local parent=() existing tree commit
        if fetch_branch; then
            parent=(-p "$TRACKING")
            if existing=$(git rev-parse --verify --quiet "$TRACKING:$name"); then
                [ "$existing" = "$blob" ] || die "branch $BRANCH already has a different" \
                    "$name: run files are never replaced (give the run another id)"
                echo "ci_history: $name is already on branch $BRANCH"
                return 0
            fi
            GIT_INDEX_FILE="$tmp/index" git read-tree "$TRACKING"
        else
            GIT_INDEX_FILE="$tmp/index" git read-tree --empty
        fi
        GIT_INDEX_FILE="$tmp/index" git update-index --add --cacheinfo "100644,$blob,$name"
        tree=$(GIT_INDEX_FILE="$tmp/index" git write-tree)
        commit=$(git commit-tree "$tree" "${parent[@]}" -m "rtmbench: add run ${name%.jsonl}")
        if git push --quiet "$REMOTE" "$commit:refs/heads/$BRANCH" 2> "$tmp/push.err"; then
            echo "ci_history: added $name to branch $BRANCH ($commit)"
            return 0
        fi
        echo "ci_history: push of $name refused (attempt $attempt): $(tr '\n' ' ' \
              < "$tmp/push.err")" >&2
        sleep $((attempt * 2))
    done
    echo "ci_history: could not add $name to branch $BRANCH after 5 attempts" >&2
    return 1
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
    fetch) cmd_fetch "$@" ;;
    gate) cmd_gate "$@" ;;
    append) cmd_append "$@" ;;
    *) usage ;;
esac
