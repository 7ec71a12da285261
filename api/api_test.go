package api_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concur-dev/concur/api"
	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
)

// The embedded descriptors must describe the same contracts as the generated code, and keep
// the comments that reflection shows.
func TestDescriptorsMatchGeneratedCodeAndKeepComments(t *testing.T) {
	files, err := api.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	for _, generated := range []protoreflect.ServiceDescriptor{
		caserv1.File_concur_caser_v1_caser_proto.Services().Get(0),
		counterv1.File_concur_counter_v1_counter_proto.Services().Get(0),
		printerv1.File_concur_printer_v1_printer_proto.Services().Get(0),
		sitesizev1.File_concur_sitesize_v1_sitesize_proto.Services().Get(0),
	} {
		d, err := files.FindDescriptorByName(generated.FullName())
		if err != nil {
			t.Fatalf("%s: %v", generated.FullName(), err)
		}
		embedded := d.(protoreflect.ServiceDescriptor)
		if embedded.Methods().Len() != generated.Methods().Len() {
			t.Errorf("%s: %d methods embedded, %d generated: run go generate ./api", generated.FullName(), embedded.Methods().Len(), generated.Methods().Len())
		}
		comment := embedded.ParentFile().SourceLocations().ByDescriptor(embedded).LeadingComments
		if !strings.Contains(comment, string(generated.Name())) {
			t.Errorf("%s: leading comment %q does not describe it", generated.FullName(), comment)
		}
	}
}
