//! The sign-in as users meet it (being written).
