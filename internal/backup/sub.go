package backup

import (
	"fmt"
	"strings"
)

// Sub returns the Target at prefix/dir of s's bucket: its files are the
// keys prefix/dir/name. dir is a relative path of plain elements separated
// by "/" (no empty element, no "." or ".."); a bad one is an error, so that
// a name made from data never reaches outside s. The Sub shares s's
// client and context.
func (s *S3) Sub(dir string) (*S3, error) {
	if err := CheckSubDir(dir); err != nil {
		return nil, err
	}
	sub := *s
	sub.prefix = s.prefix + dir + "/"
	sub.loc = s.loc + "/" + dir
	return &sub, nil
}

// CheckSubDir checks dir as Sub does, for directories of a Dir too.
func CheckSubDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("sub-directory: empty path")
	}
	for _, e := range strings.Split(dir, "/") {
		if e == "" || e == "." || e == ".." || strings.Contains(e, `\`) {
			return fmt.Errorf("sub-directory %q: element %q; want plain names separated by /", dir, e)
		}
	}
	return nil
}
