//go:build linux

// Command pause is the sandbox ("pause") container of hack/cluster.sh's test cluster, imported
// as registry.k8s.io/pause:3.10 because the machines it runs on cannot pull images.
//
// Like the upstream pause it holds the pod's namespaces open by doing nothing until it is told
// to stop, and as the PID 1 of pods that share their process namespace it reaps the zombies
// that get reparented to it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGCHLD is caught rather than ignored so that each one triggers a reap; a buffer of 1 is
	// enough as every wake-up reaps all the children that have exited.
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	for {
		select {
		case <-stop:
			// As PID 1 the default action of SIGTERM would be ignored: exit explicitly.
			os.Exit(0)
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
