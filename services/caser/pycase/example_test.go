package pycase_test

import (
	"fmt"

	"github.com/concur-dev/concur/services/caser/pycase"
)

func ExampleUpper() {
	fmt.Println(pycase.Upper("straße"), pycase.Upper("ﬁsh"), pycase.Upper("ǰ"))
	// Output: STRASSE FISH J̌
}

func ExampleTitle() {
	fmt.Println(pycase.Title("they're bill's"), pycase.Title("hello_world"), pycase.Title("world123abc"))
	fmt.Println(pycase.Title("ΟΔΟΣ"), pycase.Title("ǆemal"), pycase.Title("ﬁsh"))
	// Output:
	// They'Re Bill'S Hello_World World123Abc
	// Οδος ǅemal Fish
}
