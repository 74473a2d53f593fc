//! Delivery: our objects out to other DICOM nodes. `dimse` is the C-ECHO / C-STORE SCU
//! (`osteoscreen echo` and `send` use it today; result delivery to the PACS will).

pub mod dimse;
