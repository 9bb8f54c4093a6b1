package benchkit

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pgplane/pgplane/internal/pgtest"

	"github.com/pgplane/pgplane/internal/syncbuf"
)

// Appliance is a pgplane process that a benchmark or the demo started. It
// dies with its parent, and is stopped by its PID only.
type Appliance struct {
	Cmd  *exec.Cmd
	Log  *syncbuf.Buffer // what it printed
	done chan struct{}
}

// StartAppliance starts bin with the Corefile in dir, working in dir; with
// a netns, under `ip netns exec NETNS`.
func StartAppliance(bin, dir, netns string) (*Appliance, error) {
	if _, err := pgtest.WriteAuthPassfile(dir); err != nil { // the gateway's auth role (gateway_auth_user)
		return nil, err
	}
	args := []string{bin, "-conf", filepath.Join(dir, "Corefile")}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	a := &Appliance{Cmd: exec.Command(args[0], args[1:]...), Log: &syncbuf.Buffer{}, done: make(chan struct{})}
	a.Cmd.Dir = dir
	a.Cmd.Stdout, a.Cmd.Stderr = a.Log, a.Log
	a.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.Cmd.Wait(); close(a.done) }()
	return a, nil
}

// Stop sends SIGTERM and waits up to 5 s for the process to exit, then kills
// it. Stopping a process that has exited does nothing.
func (a *Appliance) Stop() {
	a.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		a.Kill()
	}
}

// Kill kills the process at once, as a crash would, and waits for it.
func (a *Appliance) Kill() {
	a.Cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
}
