//! Application headers both hooks read: what a query records and what a
//! response must echo.

pub mod dns;
pub mod ntp;
