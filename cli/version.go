package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at build time with -ldflags "-X .../cli.Version=v1.2.3";
// otherwise it comes from the module's build information.
var Version = ""

const versionUsage = `Usage: kiln version

  Print the version of kiln, the VCS revision it was built from when known,
  and the Go version.
`

func version() string {
	if Version != "" {
		return Version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func runVersion(e *Env, c *command, args []string) int {
	_, code, ok := e.newVerb(c, offline, 0).parse(args, 0)
	if !ok {
		return code
	}
	fmt.Fprintf(e.Stdout, "kiln %s %s/%s %s\n", version(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	return ExitOK
}
