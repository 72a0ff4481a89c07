package format

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"
)

// appendJSON appends the JSON of one value of a, read from w.r, for JSON
// lines:
//
//	null, boolean, int, long, float, double  as JSON (NaN and ±Inf as strings)
//	string, enum, uuid                        a string
//	bytes, fixed                              a base64 string
//	record, map                               an object (a record's fields in order)
//	array                                     an array
//	union                                     its branch's value, unwrapped
//	date                                      "2006-01-02"
//	time-millis, time-micros                  the number (ms, µs since midnight)
//	timestamp-millis, timestamp-micros        RFC 3339 text in UTC, "...Z"
//	local-timestamp-millis, -micros           RFC 3339 text without a zone
//	decimal                                   its exact decimal text, as a string
func (w *avroWalk) appendJSON(b []byte, a *anode) ([]byte, error) {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxValueDepth {
		return b, fmt.Errorf("%w: nested deeper than %d", ErrUndecodable, maxValueDepth)
	}
	r := w.r
	switch a.kind {
	case aNull:
		b = append(b, "null"...)
	case aBoolean:
		b = strconv.AppendBool(b, r.ReadBool())
	case aInt, aTimeMillis:
		b = strconv.AppendInt(b, int64(r.ReadInt()), 10)
	case aLong, aTimeMicros:
		b = strconv.AppendInt(b, r.ReadLong(), 10)
	case aFloat:
		b = appendFloat(b, float64(r.ReadFloat()), 32)
	case aDouble:
		b = appendFloat(b, r.ReadDouble(), 64)
	case aString, aUUID:
		b = appendString(b, string(r.ReadBytes()))
	case aBytes:
		b = appendBase64(b, r.ReadBytes())
	case aFixed:
		v := make([]byte, a.size)
		r.Read(v)
		b = appendBase64(b, v)
	case aEnum:
		sym, err := w.enumSymbol(a)
		if err != nil {
			return b, err
		}
		b = appendString(b, sym)
	case aDate:
		d := int64(r.ReadInt())
		b = append(b, '"')
		b = time.Unix(d*86400, 0).UTC().AppendFormat(b, time.DateOnly)
		b = append(b, '"')
	case aTimestampMillis, aLocalTsMillis:
		t := time.UnixMilli(r.ReadLong()).UTC()
		b = appendTime(b, t, a.kind == aTimestampMillis, "2006-01-02T15:04:05.000")
	case aTimestampMicros, aLocalTsMicros:
		t := time.UnixMicro(r.ReadLong()).UTC()
		b = appendTime(b, t, a.kind == aTimestampMicros, "2006-01-02T15:04:05.000000")
	case aDecimalBytes, aDecimalFixed:
		var v []byte
		if a.kind == aDecimalFixed {
			v = make([]byte, a.size)
			r.Read(v)
		} else {
			v = r.ReadBytes()
		}
		b = append(b, '"')
		b = appendDecimal(b, v, a.scale)
		b = append(b, '"')
	case aRecord:
		b = append(b, '{')
		for i, f := range a.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f.name)
			b = append(b, ':')
			var err error
			if b, err = w.appendJSON(b, f.node); err != nil {
				return b, err
			}
		}
		b = append(b, '}')
	case aArray, aMap:
		open, end := byte('['), byte(']')
		if a.kind == aMap {
			open, end = '{', '}'
		}
		b = append(b, open)
		n := 0
		err := w.blocks(func() error {
			if n > 0 {
				b = append(b, ',')
			}
			n++
			if a.kind == aMap {
				b = appendString(b, string(r.ReadBytes()))
				b = append(b, ':')
			}
			var err error
			b, err = w.appendJSON(b, a.items)
			return err
		})
		if err != nil {
			return b, err
		}
		b = append(b, end)
	case aUnion:
		i, err := w.unionBranch(a)
		if err != nil {
			return b, err
		}
		return w.appendJSON(b, a.branches[i])
	}
	return b, w.readErr()
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendBase64(b, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

func appendTime(b []byte, t time.Time, utc bool, layout string) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, layout)
	if utc {
		b = append(b, 'Z')
	}
	return append(b, '"')
}

// appendDecimal appends a decimal's text: v is its unscaled value, big-endian
// two's complement, as Avro has it.
func appendDecimal(b, v []byte, scale int) []byte {
	n := new(big.Int).SetBytes(v)
	if len(v) > 0 && v[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(v))))
	}
	neg := n.Sign() < 0
	digits := n.Abs(n).String()
	if neg {
		b = append(b, '-')
	}
	if scale == 0 {
		return append(b, digits...)
	}
	for len(digits) <= scale {
		digits = "0" + digits
	}
	b = append(b, digits[:len(digits)-scale]...)
	b = append(b, '.')
	return append(b, digits[len(digits)-scale:]...)
}
