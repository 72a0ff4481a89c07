// Package format is how `sluice sink` encodes records into files: JSON
// lines, Parquet, Avro object container files.
//
// A Format makes Files; a File takes records in offset order and writes
// them to an io.Writer. JSON lines buffer the whole file until Close;
// Parquet writes each row group, and Avro each block, to the writer as it
// fills (so a file's memory is one row group or block), and Close writes
// the rest and the footer: the writer holds a whole file only after Close.
// Whether a record needs a new file (ErrNewFile) depends only on the
// records, never on the clock, so that a sink that re-reads the same
// offsets after a crash writes the same files.
//
// Values in the schema registry's wire format (byte 0, a 4-byte schema
// id, the payload) are decoded when Options.Registry is set: the schema is
// fetched once per id (GET /schemas/ids/{id}, its references resolved,
// registryAttempts tries), and kept for the Format's life. An Avro
// payload is read with hamba/avro's Reader along a plan compiled from the
// schema, bounded against hostile bytes (maxValueItems, maxFieldBytes,
// maxValueDepth); one its schema does not decode fails its Append with
// ErrUndecodable. An id the registry does not know (40403) leaves the
// value as bytes. Parquet maps Avro types to typed columns (pqschema.go
// has the table), Avro files envelope the value with the record's
// metadata (avro.go), JSON lines write the datum as JSON.
package format

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Record is one Kafka record as a sink writes it.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte // nil is a null key
	Value     []byte // nil is a null value (a tombstone)
	Headers   []Header
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Format encodes records into files of one kind.
type Format interface {
	// Name is the --format value.
	Name() string
	// Ext is the file name's extension, with its dot.
	Ext() string
	// NewFile starts a file that Close writes to w.
	NewFile(w io.Writer) (File, error)
}

// File is one output file being written; its methods are not safe for
// concurrent use.
type File interface {
	// Append adds r. It keeps neither r nor r.Headers (the caller reuses
	// them for the next record), only the bytes they point to. It returns
	// ErrNewFile, having taken nothing, when r cannot go into this file
	// (its schema differs from the records before it): the caller closes
	// this file and appends r to a new one.
	Append(ctx context.Context, r *Record) error
	// Size estimates the bytes the file will have when closed, for
	// rolling by size.
	Size() int64
	// Records is how many records were appended.
	Records() int
	// Close writes what is buffered and the file's trailer to w; it does
	// not close w. A File is not used after Close.
	Close() error
}

// ErrNewFile says a record must go into a new file.
var ErrNewFile = errors.New("record needs a new file")

// Options are what some formats need.
type Options struct {
	// Registry is the schema registry's URL, to decode values in its wire
	// format (magic byte 0, a 4-byte schema id, the encoded value). Empty:
	// values are written as bytes.
	Registry string
	// HTTP is the registry's client; nil is a client with a timeout.
	HTTP *http.Client
}

// Names are the formats New knows.
var Names = []string{"jsonl", "parquet", "avro"}

// New returns the format called name. Its schemas fetched from the
// registry are kept for the Format's life, shared by its files.
func New(name string, o Options) (Format, error) {
	reg, err := newRegistry(o)
	if err != nil {
		return nil, err
	}
	switch name {
	case "jsonl":
		return JSONL{reg: reg}, nil
	case "parquet":
		return Parquet{reg: reg}, nil
	case "avro":
		return Avro{reg: reg}, nil
	}
	return nil, fmt.Errorf("format %q: want one of %v", name, Names)
}
