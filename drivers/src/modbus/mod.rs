//! Modbus RTU and TCP transports and the Modbus pack driver (being written).
