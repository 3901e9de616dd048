//go:build tools

// Package tools pins the commands this module builds: the node's own
// processes, kept apart from test/env/go/kube so that kube-apiserver's
// cache key does not move when they change.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
