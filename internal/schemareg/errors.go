package schemareg

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an answer the registry gives a client instead of a result: an
// HTTP status and Confluent's error code, which clients (franz-go's sr,
// Confluent's serializers, kafkajs) switch on. Every error that reaches a
// client is one of these; anything else becomes 50001.
type Error struct {
	Status  int    // HTTP status
	Code    int    // Confluent's error_code
	Message string // what happened and, where it helps, what to do
}

func (e *Error) Error() string { return fmt.Sprintf("schemareg: %d: %s", e.Code, e.Message) }

// Confluent's error codes (io.confluent.kafka.schemaregistry.rest.exceptions.Errors).
const (
	codeSubjectNotFound            = 40401
	codeVersionNotFound            = 40402
	codeSchemaNotFound             = 40403
	codeSubjectSoftDeleted         = 40404
	codeSubjectNotSoftDeleted      = 40405
	codeVersionSoftDeleted         = 40406
	codeVersionNotSoftDeleted      = 40407
	codeSubjectCompatNotConfigured = 40408
	codeSubjectModeNotConfigured   = 40409
	codeIncompatibleSchema         = 409
	codeInvalidSchema              = 42201
	codeInvalidVersion             = 42202
	codeInvalidCompatibilityLevel  = 42203
	codeInvalidMode                = 42204
	codeOperationNotPermitted      = 42205
	codeReferenceExists            = 42206
	codeInvalidSubject             = 42208
	codeSchemaTooLarge             = 42209
	codeStoreError                 = 50001
	codeOperationTimeout           = 50002
	codeNotReady                   = 50003 // Confluent: forwarding to the primary failed; here: not caught up yet
	codeUnsupportedMediaType       = 415
	codeRequestTooLarge            = 413
	codeBadRequest                 = 400
	codeNotFound                   = 404
)

func errorf(status, code int, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func errSubjectNotFound(subject string) *Error {
	return errorf(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", subject)
}

func errVersionNotFound(subject string, version int) *Error {
	return errorf(http.StatusNotFound, codeVersionNotFound, "Version %d not found for subject '%s'.", version, subject)
}

func errSchemaNotFound() *Error {
	return errorf(http.StatusNotFound, codeSchemaNotFound, "Schema not found")
}

func errInvalidSchema(err error) *Error {
	return errorf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", err)
}

func errInvalidVersion(v string) *Error {
	return errorf(http.StatusUnprocessableEntity, codeInvalidVersion,
		"The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", v)
}

func errNotPermitted(format string, args ...any) *Error {
	return errorf(http.StatusUnprocessableEntity, codeOperationNotPermitted, format, args...)
}

// asError turns any error into the answer a client gets.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errorf(http.StatusInternalServerError, codeStoreError, "Error in the backend data store: %v", err)
}
