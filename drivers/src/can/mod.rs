//! CAN: Pylontech-style BMS frames, slcan, candump replay (being written).
