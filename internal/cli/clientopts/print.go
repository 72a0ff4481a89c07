package clientopts

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Output formats for -o.
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// CheckOutput validates an -o value.
func CheckOutput(o string) error {
	switch o {
	case OutputTable, OutputJSON:
		return nil
	case "":
		return nil // the zero value prints a table
	}
	return fmt.Errorf("-o %q: use table or json", o)
}

// Table prints rows under an upper-case header, columns aligned.
func Table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// JSON prints v as indented JSON and a newline.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Int32s formats a list of ids as 1,2,3.
func Int32s(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}
