package kinds

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// A typed attribute struct names the template attribute of each field in
// its `attr` tag ("cidr", or "source,required" for one that must be set),
// and the value an absent attribute takes in its `default` tag (parsed as
// the field's type). A field is a string, an int64 (numbers and sizes), a
// bool, a []string, or a type of this package that decodes itself (the
// server's network and ready blocks).

// Decoder decodes the attribute values of one resource.
type Decoder struct {
	// Address is the resource's address, which every error starts with.
	Address string
	// Unknown reports whether a value is still unknown ("known after
	// apply"): spec.IsUnknown, which this package cannot import.
	Unknown func(any) bool
}

// AttrError is the error of one attribute.
type AttrError struct {
	// Attr is the attribute as the struct's tag names it.
	Attr string
	Err  error
}

func (e *AttrError) Error() string { return e.Err.Error() }
func (e *AttrError) Unwrap() error { return e.Err }

// Errors are the errors of the attributes that did not decode, in field
// order. It reads as the first, as the agent's attribute readers always
// failed on the first.
type Errors []*AttrError

func (e Errors) Error() string { return e[0].Error() }

// For returns the first error of the attributes named, nil when they all
// decoded: for a caller that needs only some of the attributes (a read,
// which must not fail on an attribute it does not use).
func For(err error, names ...string) error {
	var errs Errors
	if !errors.As(err, &errs) {
		return err
	}
	for _, e := range errs {
		for _, n := range names {
			if e.Attr == n {
				return e
			}
		}
	}
	return nil
}

// Decode sets the fields of out, a pointer to a typed attribute struct,
// from attrs. Every field that decodes is set; a field that does not is
// left at its zero value and its error is returned (as Errors).
func (d Decoder) Decode(attrs map[string]any, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("kinds: Decode into %T, want a pointer to a struct", out))
	}
	rv = rv.Elem()
	var errs Errors
	for _, f := range fieldsOf(rv.Type()) {
		if err := d.field(rv.Field(f.index), f, attrs[f.Name]); err != nil {
			errs = append(errs, &AttrError{Attr: f.Name, Err: err})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// UnknownError is the error of an attribute (or a part of one, "volumes[1]")
// still unknown when the action runs.
func (d Decoder) UnknownError(name string) error {
	return fmt.Errorf("%s: attribute %q is still unknown (known after apply) when the action runs: the value it depends on was not resolved", d.Address, name)
}

// RequiredError is the error of a required attribute that is not set.
func (d Decoder) RequiredError(name string) error {
	return fmt.Errorf("%s: attribute %q is required", d.Address, name)
}

// selfDecoder is a field type that decodes its attribute itself; v is
// neither absent nor nil.
type selfDecoder interface {
	decodeAttr(d Decoder, name string, v any) error
}

var selfDecoderType = reflect.TypeFor[selfDecoder]()

func (d Decoder) field(dst reflect.Value, f Field, v any) error {
	if v == nil {
		if f.Required {
			return d.RequiredError(f.Name)
		}
		if f.def.IsValid() {
			dst.Set(f.def)
		}
		return nil
	}
	if f.self {
		// A *T field holds a new T; a T field takes the value of one.
		t := dst.Type()
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		tmp := reflect.New(t)
		if err := tmp.Interface().(selfDecoder).decodeAttr(d, f.Name, v); err != nil {
			return err
		}
		if dst.Kind() == reflect.Pointer {
			dst.Set(tmp)
		} else {
			dst.Set(tmp.Elem())
		}
		return nil
	}
	x, err := d.value(dst.Type(), f.Name, v)
	if err != nil {
		return err
	}
	dst.Set(reflect.ValueOf(x))
	return nil
}

// value converts one value to t (string, int64, bool or []string).
func (d Decoder) value(t reflect.Type, name string, v any) (any, error) {
	switch t {
	case reflect.TypeFor[string]():
		return d.String(name, v)
	case reflect.TypeFor[int64]():
		return d.Int(name, v)
	case reflect.TypeFor[bool]():
		return d.Bool(name, v)
	case reflect.TypeFor[[]string]():
		return d.Strings(name, v)
	}
	panic(fmt.Sprintf("kinds: attribute %q: field type %s", name, t))
}

// String is a set value that must be a string.
func (d Decoder) String(name string, v any) (string, error) {
	if d.Unknown(v) {
		return "", d.UnknownError(name)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: attribute %q is a %T, want a string", d.Address, name, v)
	}
	return s, nil
}

// Int is a set value that must be a whole number.
func (d Decoder) Int(name string, v any) (int64, error) {
	if n, whole, ok := number(v); ok {
		if !whole {
			return 0, fmt.Errorf("%s: attribute %q is %v, want a whole number", d.Address, name, v)
		}
		return n, nil
	}
	if d.Unknown(v) {
		return 0, d.UnknownError(name)
	}
	return 0, fmt.Errorf("%s: attribute %q is a %T, want a number", d.Address, name, v)
}

// Bool is a set value that must be a bool.
func (d Decoder) Bool(name string, v any) (bool, error) {
	if x, ok := v.(bool); ok {
		return x, nil
	}
	if d.Unknown(v) {
		return false, d.UnknownError(name)
	}
	return false, fmt.Errorf("%s: attribute %q is a %T, want a bool", d.Address, name, v)
}

// Strings is a set value that must be a list of strings; an unknown
// element is named by its index ("volumes[1]").
func (d Decoder) Strings(name string, v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		if d.Unknown(v) {
			return nil, d.UnknownError(name)
		}
		return nil, fmt.Errorf("%s: attribute %q is a %T, want a list of strings", d.Address, name, v)
	}
	out := make([]string, 0, len(l))
	for i, e := range l {
		if d.Unknown(e) {
			return nil, d.UnknownError(fmt.Sprintf("%s[%d]", name, i))
		}
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%s: attribute %s[%d] is a %T, want a string", d.Address, name, i, e)
		}
		out = append(out, s)
	}
	return out, nil
}

// number is v as an int64 when it is a number (int64, int or float64);
// whole is false for a float64 with a fraction.
func number(v any) (n int64, whole, ok bool) {
	switch x := v.(type) {
	case int64:
		return x, true, true
	case int:
		return int64(x), true, true
	case float64:
		return int64(x), x == float64(int64(x)), true
	}
	return 0, false, false
}

// Field is one tagged field of a typed attribute struct.
type Field struct {
	// Name is the template attribute it decodes.
	Name string
	// Required: the attribute must be set.
	Required bool
	// Type is the field's Go type.
	Type reflect.Type
	// Default is the value an absent attribute takes (its `default` tag),
	// nil when there is none.
	Default any

	index int
	self  bool
	def   reflect.Value
}

var fieldCache sync.Map // reflect.Type -> []Field

// fieldsOf parses the tags of a typed attribute struct (once per type).
func fieldsOf(t reflect.Type) []Field {
	if c, ok := fieldCache.Load(t); ok {
		return c.([]Field)
	}
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("attr")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		f := Field{Name: name, Required: opts == "required", Type: sf.Type, index: i,
			self: sf.Type.Implements(selfDecoderType) || reflect.PointerTo(sf.Type).Implements(selfDecoderType)}
		if def, ok := sf.Tag.Lookup("default"); ok {
			f.def = parseDefault(t, sf, def)
			f.Default = f.def.Interface()
		}
		out = append(out, f)
	}
	fieldCache.Store(t, out)
	return out
}

func parseDefault(t reflect.Type, sf reflect.StructField, s string) reflect.Value {
	var v any
	var err error
	switch sf.Type.Kind() {
	case reflect.String:
		v = s
	case reflect.Int64:
		v, err = strconv.ParseInt(s, 10, 64)
	case reflect.Bool:
		v, err = strconv.ParseBool(s)
	default:
		err = errors.New("no default for this type")
	}
	if err != nil {
		panic(fmt.Sprintf("kinds: %s.%s: default %q: %v", t.Name(), sf.Name, s, err))
	}
	return reflect.ValueOf(v).Convert(sf.Type)
}
