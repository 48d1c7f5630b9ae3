package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Load reads every setting from the environment and, unlike a single
// envconfig.Process (which stops at the first bad value), reports every
// malformed variable at once, one line each, naming the variable. It only
// parses: Validate and ValidateSlack check the values.
//
// Each field is processed on its own, as the only field of a struct built
// with reflect.StructOf that carries the field's tag, so envconfig's parsing
// (defaults, Decoder types such as IDList) stays the one parser.
func Load() (Config, error) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	t := v.Type()
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		if err := envconfig.Process("", one.Interface()); err != nil {
			errs = append(errs, configError(f, err))
			continue
		}
		v.Field(i).Set(one.Elem().Field(0))
	}
	if c.Replica == "" {
		c.Replica = defaultReplica()
	}
	return c, errors.Join(errs...)
}

// configError turns envconfig's "envconfig.Process: assigning PGKILL_X to
// Y: converting 'soon' to type time.Duration. details: …" into a line that
// names the variable and says what it takes. The value is shown only for
// durations and numbers: a string setting may hold a secret.
func configError(f reflect.StructField, err error) error {
	name := f.Tag.Get("envconfig")
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", name, err)
	}
	switch f.Type {
	case reflect.TypeFor[time.Duration]():
		return fmt.Errorf("%s: %q is not a duration: write a number with a unit, e.g. 30s, 5m, 1h", name, pe.Value)
	case reflect.TypeFor[bool]():
		return fmt.Errorf("%s: %q is not true or false", name, pe.Value)
	case reflect.TypeFor[int]():
		return fmt.Errorf("%s: %q is not a whole number", name, pe.Value)
	}
	msg := "malformed value"
	if pe.Err != nil {
		msg = strings.TrimSpace(pe.Err.Error())
	}
	return fmt.Errorf("%s: %s", name, msg)
}

// Errors joins the errors of Load, TargetSpecs and Validate into
// one error with one line per problem. A variable that could not be parsed
// is reported once: the check of the zero value it was left with is
// dropped.
func Errors(errs ...error) error {
	var out []error
	seen := map[string]bool{}
	for _, err := range errs {
		for _, e := range flatten(err) {
			name := variable(e.Error())
			if name != "" && seen[name] {
				continue
			}
			seen[name] = true
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// variable is the name a configuration error starts with, "" if none.
func variable(msg string) string {
	end := strings.IndexFunc(msg, func(r rune) bool { return !(r == '_' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') })
	if end <= 0 {
		return ""
	}
	return msg[:end]
}
