//go:build tools

// Package tools pins kine (the etcd API over SQL) for hack/tools.sh.
package tools

import _ "github.com/k3s-io/kine"
