import CLibUDev
import DXProtocol
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One USB device as udev describes it.
public struct USBDeviceRecord: Sendable, Equatable, Codable {
    public var syspath: String
    public var devnode: String?
    public var busnum: Int
    public var devnum: Int
    public var vendorID: UInt16
    public var productID: UInt16
    public var serial: String?
    /// bcdDevice: firmware major.minor (ICD §1).
    public var firmware: String?

    public var location: String { String(format: "bus %03d address %03d", busnum, devnum) }
}

/// Which device the daemon drives: the ICD's VID/PID (configurable) and optionally a serial.
public struct USBDeviceMatch: Sendable, Equatable {
    public var vendorID: UInt16 = ICDUSB.vendorID
    public var productID: UInt16 = ICDUSB.productID
    public var serial: String?

    public init(vendorID: UInt16 = ICDUSB.vendorID, productID: UInt16 = ICDUSB.productID, serial: String? = nil) {
        self.vendorID = vendorID; self.productID = productID; self.serial = serial
    }

    public func matches(_ r: USBDeviceRecord) -> Bool {
        r.vendorID == vendorID && r.productID == productID && (serial == nil || r.serial == serial)
    }
}

/// Discovery of DX-1 units through libudev (`usb` subsystem, `usb_device` type).
public enum UdevDiscovery {
    /// Every attached USB device that matches.
    public static func enumerate(_ match: USBDeviceMatch) -> [USBDeviceRecord] {
        guard let udev = udev_new() else { return [] }
        defer { udev_unref(udev) }
        guard let e = udev_enumerate_new(udev) else { return [] }
        defer { udev_enumerate_unref(e) }
        udev_enumerate_add_match_subsystem(e, "usb")
        udev_enumerate_add_match_property(e, "DEVTYPE", "usb_device")
        udev_enumerate_scan_devices(e)
        var out: [USBDeviceRecord] = []
        var entry = udev_enumerate_get_list_entry(e)
        while let item = entry {
            if let path = udev_list_entry_get_name(item), let dev = udev_device_new_from_syspath(udev, path) {
                if let r = record(dev), match.matches(r) { out.append(r) }
                udev_device_unref(dev)
            }
            entry = udev_list_entry_get_next(item)
        }
        return out.sorted { ($0.busnum, $0.devnum) < ($1.busnum, $1.devnum) }
    }

    static func record(_ dev: OpaquePointer) -> USBDeviceRecord? {
        func attr(_ name: String) -> String? {
            udev_device_get_sysattr_value(dev, name).map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        func prop(_ name: String) -> String? { udev_device_get_property_value(dev, name).map { String(cString: $0) } }
        guard let syspath = udev_device_get_syspath(dev).map({ String(cString: $0) }) else { return nil }
        guard let vid = (attr("idVendor") ?? prop("ID_VENDOR_ID")).flatMap({ UInt16($0, radix: 16) }),
              let pid = (attr("idProduct") ?? prop("ID_MODEL_ID")).flatMap({ UInt16($0, radix: 16) }) else { return nil }
        let bus = (attr("busnum") ?? prop("BUSNUM")).flatMap { Int($0) } ?? 0
        let dnum = (attr("devnum") ?? prop("DEVNUM")).flatMap { Int($0) } ?? 0
        var firmware: String?
        if let bcd = attr("bcdDevice"), let v = UInt16(bcd, radix: 16) {
            firmware = "\(v >> 8).\(v & 0xFF)"
        }
        return USBDeviceRecord(syspath: syspath, devnode: udev_device_get_devnode(dev).map { String(cString: $0) },
                               busnum: bus, devnum: dnum, vendorID: vid, productID: pid,
                               serial: attr("serial") ?? prop("ID_SERIAL_SHORT"), firmware: firmware)
    }
}

let debugEvents = ProcessInfo.processInfo.environment["DEXA_DEBUG_UDEV"] != nil

/// A udev monitor for USB devices coming and going, read on a thread of its own.
public final class UdevMonitor: Sendable {
    public enum Change: Sendable, Equatable {
        case added(USBDeviceRecord)
        case removed(syspath: String)
    }

    public let changes: AsyncStream<Change>
    private let continuation: AsyncStream<Change>.Continuation
    private let stopFD: Int32
    private let wakeFD: Int32

    /// Starts listening; `match` filters additions (removals carry only the syspath).
    public init?(match: USBDeviceMatch) {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return nil }
        stopFD = pipeFDs[0]
        wakeFD = pipeFDs[1]
        (changes, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(64))
        guard let udev = udev_new(), let mon = udev_monitor_new_from_netlink(udev, "udev") else { return nil }
        // Subsystem only: emulated uevents may lack DEVTYPE; interfaces are told apart by
        // their missing idVendor when the record is read.
        udev_monitor_filter_add_match_subsystem_devtype(mon, "usb", nil)
        guard udev_monitor_enable_receiving(mon) >= 0 else {
            udev_monitor_unref(mon)
            udev_unref(udev)
            return nil
        }
        let fd = udev_monitor_get_fd(mon)
        let cont = continuation
        let stop = stopFD
        // The monitor and udev handles belong to this thread alone from here on.
        let thread = Thread { [udev = UnsafeSendable(udev), mon = UnsafeSendable(mon)] in
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
            while true {
                let n = poll(&fds, 2, -1)
                if n < 0 { if errno == EINTR { continue } else { break } }
                if fds[1].revents != 0 { break }
                guard fds[0].revents != 0, let dev = udev_monitor_receive_device(mon.value) else { continue }
                let action = udev_device_get_action(dev).map { String(cString: $0) } ?? ""
                if debugEvents { FileHandle.standardError.write(Data("udev monitor: \(action) \(udev_device_get_syspath(dev).map { String(cString: $0) } ?? "?")\n".utf8)) }
                if action == "remove", let path = udev_device_get_syspath(dev).map({ String(cString: $0) }) {
                    cont.yield(.removed(syspath: path))
                } else if action == "add", let r = UdevDiscovery.record(dev), match.matches(r) {
                    cont.yield(.added(r))
                }
                udev_device_unref(dev)
            }
            udev_monitor_unref(mon.value)
            udev_unref(udev.value)
            cont.finish()
        }
        thread.name = "dexa-udev"
        thread.start()
    }

    public func stop() {
        var b: UInt8 = 1
        _ = write(wakeFD, &b, 1)
    }

    deinit {
        stop()
    }
}

/// Hands a C handle to the one thread that uses it from then on. Safe because the creating
/// code never touches the handle again after giving it away (see `UdevMonitor.init`).
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
