// Package schema is `sluice schema`: register, get, list, check and delete
// schemas in a schema registry (sluice serve's, or any that speaks
// Confluent's REST API) over HTTP.
package schema

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

const (
	// DefaultRegistry is where sluice serve's registry listens by default.
	DefaultRegistry = "http://127.0.0.1:8081"
	// RegistryEnv overrides DefaultRegistry.
	RegistryEnv = "SLUICE_SCHEMA_REGISTRY"
	// defaultTimeout bounds each command's requests.
	defaultTimeout = 30 * time.Second
	// maxSchemaFileBytes bounds a schema read from a file or stdin (the
	// registry's own limit is 1 MiB).
	maxSchemaFileBytes = 4 << 20
)

// Common are the flags every schema command shares, and its streams.
type Common struct {
	Registry string
	Timeout  time.Duration
	Output   string // text (default) or json
	In       io.Reader
	Out      io.Writer
}

func addFlags(fs *pflag.FlagSet, c *Common) {
	def := DefaultRegistry
	if env := strings.TrimSpace(os.Getenv(RegistryEnv)); env != "" {
		def = env
	}
	fs.StringVar(&c.Registry, "registry", def, "schema registry URL (env "+RegistryEnv+")")
	fs.DurationVar(&c.Timeout, "timeout", defaultTimeout, "how long to wait for the registry")
	fs.StringVarP(&c.Output, "output", "o", "text", "output format: text or json")
}

func (c *Common) setStreams(cmd *cobra.Command) { c.In, c.Out = cmd.InOrStdin(), cmd.OutOrStdout() }

func (c Common) client() (*sr.Client, error) {
	if c.Output != "text" && c.Output != "json" {
		return nil, fmt.Errorf("-o %q: use text or json", c.Output)
	}
	cl, err := sr.NewClient(sr.URLs(c.Registry))
	if err != nil {
		return nil, fmt.Errorf("--registry %s: %w", c.Registry, err)
	}
	return cl, nil
}

func (c Common) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, c.Timeout)
}

// explain adds what to try to an error from the registry.
func explain(err error, c Common) error {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("schema registry %s: %s (error code %d)", c.Registry, re.Message, re.ErrorCode)
	}
	return fmt.Errorf("schema registry %s: %w (is it running? sluice serve serves one on 127.0.0.1:8081; or set --registry)", c.Registry, err)
}

// Command returns `sluice schema` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Schemas in a schema registry: register, get, list, check, delete",
		Long: `Work with the schema registry that sluice serve runs on --schema-registry-listen
(127.0.0.1:8081 by default), or any registry that speaks Confluent's REST API.
Schemas are AVRO (the default) or JSON.`,
		Example: `  sluice schema register users-value user.avsc
  sluice schema register events-value --type JSON event.json
  sluice schema get users-value
  sluice schema get --id 3
  sluice schema list
  sluice schema check users-value user-v2.avsc
  sluice schema delete users-value --version 1`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(registerCommand(), getCommand(), listCommand(), checkCommand(), deleteCommand())
	return cmd
}

// SchemaFlags describe the schema a command sends.
type SchemaFlags struct {
	Type       string   // AVRO or JSON
	References []string // name=subject:version
}

func addSchemaFlags(fs *pflag.FlagSet, s *SchemaFlags) {
	fs.StringVarP(&s.Type, "type", "t", "AVRO", "schema type: AVRO or JSON")
	fs.StringArrayVar(&s.References, "reference", nil, "a schema this one references, name=subject:version (repeatable)")
}

// readSchema reads FILE (or stdin for "-" or none) into a schema.
func readSchema(c Common, s SchemaFlags, file string) (sr.Schema, error) {
	var out sr.Schema
	if err := out.Type.UnmarshalText([]byte(s.Type)); err != nil || out.Type == sr.TypeProtobuf {
		return out, fmt.Errorf("--type %q: use AVRO or JSON", s.Type)
	}
	in := c.In
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return out, err
		}
		defer f.Close()
		in = f
	}
	if in == nil {
		in = strings.NewReader("")
	}
	b, err := io.ReadAll(io.LimitReader(in, maxSchemaFileBytes+1))
	if err != nil {
		return out, fmt.Errorf("read the schema: %w", err)
	}
	if len(b) > maxSchemaFileBytes {
		return out, fmt.Errorf("the schema is over %d bytes", maxSchemaFileBytes)
	}
	if strings.TrimSpace(string(b)) == "" {
		return out, errors.New("no schema: give a file, or pipe one to stdin")
	}
	out.Schema = string(b)
	for _, r := range s.References {
		name, sv, ok := strings.Cut(r, "=")
		subject, v, ok2 := strings.Cut(sv, ":")
		n, err := strconv.Atoi(v)
		if !ok || !ok2 || name == "" || subject == "" || err != nil || n < 1 {
			return out, fmt.Errorf("--reference %q: want name=subject:version", r)
		}
		out.References = append(out.References, sr.SchemaReference{Name: name, Subject: subject, Version: n})
	}
	return out, nil
}

func parseVersion(s string) (int, error) {
	if s == "latest" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || (n < 1 && n != -1) {
		return 0, fmt.Errorf("--version %q: a number from 1, or latest", s)
	}
	return n, nil
}

func registerCommand() *cobra.Command {
	var (
		c Common
		s SchemaFlags
	)
	cmd := &cobra.Command{
		Use:   "register SUBJECT [FILE|-]",
		Short: "Register a schema under a subject and print its id",
		Long: `Register the schema in FILE (or stdin) under SUBJECT. The registry checks it
against the subject's compatibility level; the same schema registered again
gets the same id.`,
		Example: `  sluice schema register users-value user.avsc
  sluice schema register orders-value order.avsc --reference com.example.Address=address:1
  echo '{"type":"object"}' | sluice schema register events-value --type JSON`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.setStreams(cmd)
			file := ""
			if len(args) == 2 {
				file = args[1]
			}
			return runRegister(cmd.Context(), c, s, args[0], file)
		},
	}
	addFlags(cmd.Flags(), &c)
	addSchemaFlags(cmd.Flags(), &s)
	return cmd
}

func runRegister(parent context.Context, c Common, s SchemaFlags, subject, file string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	schema, err := readSchema(c, s, file)
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx(parent)
	defer cancel()
	ss, err := cl.CreateSchema(ctx, subject, schema)
	if err != nil {
		return explain(err, c)
	}
	if c.Output == "json" {
		return clientopts.JSON(c.Out, map[string]any{"subject": ss.Subject, "version": ss.Version, "id": ss.ID})
	}
	fmt.Fprintf(c.Out, "registered %s version %d, id %d\n", ss.Subject, ss.Version, ss.ID)
	return nil
}

func getCommand() *cobra.Command {
	var (
		c       Common
		ver     string
		id      int
		deleted bool
	)
	cmd := &cobra.Command{
		Use:   "get SUBJECT | get --id ID",
		Short: "Print a schema: a subject's version, or the schema with an id",
		Example: `  sluice schema get users-value
  sluice schema get users-value --version 2 -o json
  sluice schema get --id 7`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.setStreams(cmd)
			if (len(args) == 1) == (id > 0) {
				return errors.New("give a SUBJECT or --id, one of them")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, cancel := c.ctx(cmd.Context())
			defer cancel()
			if deleted {
				ctx = sr.WithParams(ctx, sr.ShowDeleted)
			}
			var ss sr.SubjectSchema
			if id > 0 {
				s, err := cl.SchemaByID(ctx, id)
				if err != nil {
					return explain(err, c)
				}
				ss = sr.SubjectSchema{ID: id, Schema: s}
			} else {
				v, err := parseVersion(ver)
				if err != nil {
					return err
				}
				if ss, err = cl.SchemaByVersion(ctx, args[0], v); err != nil {
					return explain(err, c)
				}
			}
			if c.Output == "json" {
				return clientopts.JSON(c.Out, ss)
			}
			fmt.Fprintln(c.Out, ss.Schema.Schema)
			return nil
		},
	}
	addFlags(cmd.Flags(), &c)
	cmd.Flags().StringVar(&ver, "version", "latest", "the version: a number, or latest")
	cmd.Flags().IntVar(&id, "id", 0, "the schema's id instead of a subject")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "include soft-deleted versions")
	return cmd
}

func listCommand() *cobra.Command {
	var (
		c       Common
		deleted bool
	)
	cmd := &cobra.Command{
		Use:   "list [SUBJECT]",
		Short: "List the subjects, or a subject's versions",
		Example: `  sluice schema list
  sluice schema list users-value --deleted`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.setStreams(cmd)
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx, cancel := c.ctx(cmd.Context())
			defer cancel()
			if deleted {
				ctx = sr.WithParams(ctx, sr.ShowDeleted)
			}
			var out []string
			if len(args) == 0 {
				if out, err = cl.Subjects(ctx); err != nil {
					return explain(err, c)
				}
			} else {
				vs, err := cl.SubjectVersions(ctx, args[0])
				if err != nil {
					return explain(err, c)
				}
				if c.Output == "json" {
					return clientopts.JSON(c.Out, vs)
				}
				for _, v := range vs {
					out = append(out, strconv.Itoa(v))
				}
			}
			if c.Output == "json" {
				return clientopts.JSON(c.Out, out)
			}
			for _, s := range out {
				fmt.Fprintln(c.Out, s)
			}
			return nil
		},
	}
	addFlags(cmd.Flags(), &c)
	cmd.Flags().BoolVar(&deleted, "deleted", false, "include soft-deleted subjects or versions")
	return cmd
}

func checkCommand() *cobra.Command {
	var (
		c   Common
		s   SchemaFlags
		ver string
	)
	cmd := &cobra.Command{
		Use:   "check SUBJECT [FILE|-]",
		Short: "Check whether a schema is compatible with a subject's version (exit status 1 if not)",
		Example: `  sluice schema check users-value user-v2.avsc
  sluice schema check users-value user-v2.avsc --version 1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.setStreams(cmd)
			cl, err := c.client()
			if err != nil {
				return err
			}
			file := ""
			if len(args) == 2 {
				file = args[1]
			}
			schema, err := readSchema(c, s, file)
			if err != nil {
				return err
			}
			v, err := parseVersion(ver)
			if err != nil {
				return err
			}
			ctx, cancel := c.ctx(cmd.Context())
			defer cancel()
			res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), args[0], v, schema)
			if err != nil {
				return explain(err, c)
			}
			if c.Output == "json" {
				if err := clientopts.JSON(c.Out, res); err != nil {
					return err
				}
			} else if res.Is {
				fmt.Fprintln(c.Out, "compatible")
			} else {
				fmt.Fprintln(c.Out, "incompatible")
				for _, m := range res.Messages {
					fmt.Fprintln(c.Out, "  "+m)
				}
			}
			if !res.Is {
				return fmt.Errorf("the schema is not compatible with %s version %s", args[0], ver)
			}
			return nil
		},
	}
	addFlags(cmd.Flags(), &c)
	addSchemaFlags(cmd.Flags(), &s)
	cmd.Flags().StringVar(&ver, "version", "latest", "the version to check against: a number, or latest")
	return cmd
}

func deleteCommand() *cobra.Command {
	var (
		c         Common
		ver       string
		permanent bool
	)
	cmd := &cobra.Command{
		Use:   "delete SUBJECT",
		Short: "Delete a subject or one of its versions (soft; --permanent after a soft delete)",
		Example: `  sluice schema delete users-value
  sluice schema delete users-value --permanent
  sluice schema delete users-value --version 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.setStreams(cmd)
			cl, err := c.client()
			if err != nil {
				return err
			}
			how := sr.SoftDelete
			if permanent {
				how = sr.HardDelete
			}
			ctx, cancel := c.ctx(cmd.Context())
			defer cancel()
			var deleted []int
			if ver == "" {
				if deleted, err = cl.DeleteSubject(ctx, args[0], how); err != nil {
					return explain(err, c)
				}
			} else {
				v, err := parseVersion(ver)
				if err != nil {
					return err
				}
				if err := cl.DeleteSchema(ctx, args[0], v, how); err != nil {
					return explain(err, c)
				}
				deleted = []int{v}
			}
			if c.Output == "json" {
				return clientopts.JSON(c.Out, map[string]any{"subject": args[0], "versions": deleted, "permanent": permanent})
			}
			kind := "soft-deleted"
			if permanent {
				kind = "permanently deleted"
			}
			fmt.Fprintf(c.Out, "%s %s versions %v\n", kind, args[0], deleted)
			return nil
		},
	}
	addFlags(cmd.Flags(), &c)
	cmd.Flags().StringVar(&ver, "version", "", "delete this version only (a number, or latest)")
	cmd.Flags().BoolVar(&permanent, "permanent", false, "delete permanently (only what was soft-deleted before)")
	return cmd
}
