// Command kiln is a declarative infrastructure daemon and its CLI.
package main

import (
	"os"

	"github.com/kiln-dev/kiln/cli"
)

func main() { os.Exit(cli.Run(os.Args)) }
