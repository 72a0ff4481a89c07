package schemareg

import "testing"

// A 409's message lists each incompatibility, separated as Confluent's
// "details: [{...}, {...}]" are: messages hold spaces, so a space alone
// (fmt's %v of a slice) ran two of them together.
func TestIncompatibleMessageSeparatesDetails(t *testing.T) {
	e := incompatible("s-value", []string{"BACKWARD: at /a: one reason", "BACKWARD: at /b: another"})
	want := `Schema being registered is incompatible with an earlier schema for subject "s-value", details: [BACKWARD: at /a: one reason, BACKWARD: at /b: another]`
	if e.Message != want {
		t.Errorf("message\n got %s\nwant %s", e.Message, want)
	}
	if e.Status != 409 || e.Code != codeIncompatibleSchema {
		t.Errorf("status %d code %d, want 409 %d", e.Status, e.Code, codeIncompatibleSchema)
	}
}
