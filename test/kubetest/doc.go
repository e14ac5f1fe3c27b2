// Package kubetest starts a real etcd and kube-apiserver for tests, on
// 127.0.0.1, with RBAC and the Node authorizer on, and hands back an admin
// client, a kubeconfig and helpers to act as a ServiceAccount or run kubectl.
//
// There is no scheduler, controller-manager or kubelet: pods must be created
// with spec.nodeName set, nothing runs them, and a deleted pod only becomes
// terminating unless it is deleted with grace period 0. The ServiceAccount
// admission plugin is off (no controller creates "default" ServiceAccounts).
//
// The binaries come from test/tools/build.sh (`make tools`), which puts them
// in <repo>/.cache/tools/bin; LOGAGENT_KUBE_ASSETS overrides that folder.
//
// A cluster costs about 5-10 s to start and ~320 MiB of memory: share one
// between the subtests of a test rather than starting one per subtest.
package kubetest
