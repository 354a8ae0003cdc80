package harness

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// numCPU counts the online CPUs of the machine (not of this process's
// affinity mask, which run.sh narrows to the generator's CPU).
func numCPU() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(r, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if found {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			return runtime.NumCPU()
		}
		n += z - a + 1
	}
	return n
}

func goVersion() string { return runtime.Version() }

func envBinDir() string { return os.Getenv("BENCH_BIN_DIR") }
