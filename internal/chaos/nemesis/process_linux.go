package nemesis

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// dieWithParent has the kernel SIGKILL the process when the test that
// started it dies (a timeout, a panic), so that no node outlives its test.
// The signal follows the thread that started the process; os/exec starts
// processes from threads the runtime keeps.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

const (
	// stopTimeout bounds the wait for every thread of a SIGSTOPped
	// process to stop.
	stopTimeout = 5 * time.Second
	// stopPoll is the pause between two looks at /proc while waiting. The
	// kernel has no event for "stopped" that does not race with os/exec's
	// own wait for the exit.
	stopPoll = time.Millisecond
)

// waitStopped waits until every thread of pid is stopped ('T' in
// /proc/pid/task/*/stat): SIGSTOP is delivered asynchronously, and a thread
// running on another CPU may still answer a request after kill(2) returns.
func waitStopped(pid int) error {
	deadline := time.Now().Add(stopTimeout)
	for {
		stopped, err := allThreadsStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nemesis: pid %d not stopped %v after SIGSTOP", pid, stopTimeout)
		}
		time.Sleep(stopPoll)
	}
}

func allThreadsStopped(pid int) (bool, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("nemesis: reading the state of pid %d: %w", pid, err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			return false, nil // a thread that just exited: look again
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return false, fmt.Errorf("nemesis: %s/%s/stat: unexpected %q", dir, task.Name(), s)
		}
		switch s[i+2] {
		case 'T', 't':
		case 'Z', 'X':
			return false, fmt.Errorf("nemesis: pid %d exited instead of stopping", pid)
		default:
			return false, nil
		}
	}
	return true, nil
}
