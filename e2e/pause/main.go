// Command pause is the sandbox ("pause") container of the e2e real nodes: it holds a
// pod's namespaces open, reaps any orphan that ends up as its child (it is PID 1 of the
// pod when the PID namespace is shared), and exits cleanly on SIGINT or SIGTERM.
// Built here because no registry image can be pulled on the test machines.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap collects every exited child without blocking, so none stays a zombie.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
