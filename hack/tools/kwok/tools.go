//go:build tools

// Package tools pins kwok, the fake-node controller of joch's local control plane.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
