# Source this to point tools and tests at the binaries test/tools/build.sh
# builds (it does not build anything):
#   . test/tools/env.sh
# test/kubetest finds <repo>/.cache/tools/bin without it; this is for running
# the binaries by hand, or when LOGAGENT_TOOLS_DIR moved them elsewhere.
_logagent_repo="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/../.." && pwd)"
export LOGAGENT_KUBE_ASSETS="${LOGAGENT_TOOLS_DIR:-$_logagent_repo/.cache/tools}/bin"
# controller-runtime's envtest reads the same folder layout.
export KUBEBUILDER_ASSETS="$LOGAGENT_KUBE_ASSETS"
unset _logagent_repo
