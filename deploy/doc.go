// Package deploy holds logagent's deployment artifacts — the Kubernetes
// manifests (kubernetes/), the Helm chart (helm/logagent/), the Grafana
// dashboard (grafana/) and the Prometheus alerts (prometheus/) — and the tests
// that check them, and the repository's Dockerfile, against real servers and
// tools: a kube-apiserver (test/kubetest), kubectl, helm, Prometheus and
// promtool. The package has no code of its own.
package deploy
