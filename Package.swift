// swift-tools-version: 6.1
import PackageDescription

// The compute modules (protocol framing, physics, decomposition, analysis) are compiled
// optimised in debug builds too: the tests and the simulator spend most of their time in
// them, and an unoptimised simulator at 50x leaves the machine too busy for the timing the
// integration tests check. `-assert-config Debug` keeps what a debug build checks: assert
// (none of them uses it), and the standard library's bounds checks on unsafe buffers and raw
// pointers, which plain -O drops; overflow checks and preconditions stay on under -O anyway.
let optimisedInDebug: [SwiftSetting] = [.unsafeFlags(["-O", "-assert-config", "Debug"], .when(configuration: .debug))]

let package = Package(
    name: "dexa",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "dexad", targets: ["dexad"]),
        .executable(name: "dexa", targets: ["dexa"]),
        .executable(name: "dexa-sim", targets: ["dexa-sim"]),
        .executable(name: "dexa-dicomd", targets: ["dexa-dicomd"]),
        .executable(name: "dexa-console", targets: ["dexa-console"]),
        .executable(name: "dexa-bench", targets: ["dexa-bench"]),
        .executable(name: "dexa-fuzz", targets: ["dexa-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
    ],
    targets: [
        // zlib's crc32 is the ICD's CRC by definition, and the fastest one on this machine.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Data path: bytes -> frames -> lines.
        .target(name: "DXProtocol", dependencies: ["CZlib"], swiftSettings: optimisedInDebug),
        .target(name: "DXTransport", dependencies: [
            "DXProtocol",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // The real USB path: libusb for transfers, libudev for discovery and hotplug. Nothing
        // but DXUSB imports these two.
        // cairo draws the report (PDF and PNG); nothing imports it but DXReport.
        .systemLibrary(name: "CCairo", pkgConfig: "cairo", providers: [.apt(["libcairo2-dev"])]),
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),
        .systemLibrary(name: "CLibUDev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .target(name: "DXUSB", dependencies: [
            "CLibUSB", "CLibUDev", "DXProtocol", "DXTransport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "DXDevice", dependencies: [
            "DXProtocol", "DXTransport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The real-time core: references, attenuation, calibration, decomposition. Pure values.
        .target(name: "DXDecomposition", dependencies: ["DXProtocol", "CZlib"], swiftSettings: optimisedInDebug),
        // Clinical interpretation: reference data, T and Z, WHO, ISCD rules, precision. Pure, cited.
        .target(name: "DXClinical"),
        // Spine and hip analysis over decomposed scans: ROIs, labels, findings. Pure.
        .target(name: "DXAnalysis", dependencies: ["DXDecomposition", "DXClinical"], swiftSettings: optimisedInDebug),
        // The report page, drawn with cairo from an exam's results and its decomposed scans.
        .target(name: "DXReport", dependencies: ["CCairo", "DXAcquisition", "DXAnalysis", "DXClinical", "DXDecomposition"]),
        .target(name: "DXAcquisition", dependencies: [
            "DXProtocol", "DXTransport", "DXDevice", "DXDecomposition", "DXAnalysis", "DXClinical",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The exam store: SQLite through GRDB, in the daemon's state directory.
        .target(name: "DXStore", dependencies: [
            "DXProtocol", "DXAcquisition", "DXAnalysis", "DXClinical",
            .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        // Control path: socket -> sequencer -> device.
        .target(name: "DXControl", dependencies: [
            "DXProtocol", "DXDevice", "DXDecomposition", "DXAcquisition", "DXClinical",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // glibc functions the Glibc module lacks, for the daemon (malloc_trim, closefrom for spawn).
        .target(name: "CGlibcExtras"),
        // Programs run to their end (posix_spawn, no signal blocked, no descriptor passed on).
        .target(name: "DXSpawn", dependencies: ["CGlibcExtras"]),
        .target(name: "DXDaemon", dependencies: [
            "CGlibcExtras", "DXSpawn", "DXProtocol", "DXTransport", "DXUSB", "DXDevice", "DXDecomposition", "DXAcquisition", "DXClinical", "DXStore", "DXControl", "DXSimulator",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        .target(name: "DXCommandLine", dependencies: [
            "DXProtocol", "DXControl", "DXUSB", "DXDecomposition", "DXAcquisition", "DXAnalysis", "DXClinical", "DXReport", "DXDicom",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "dexad", dependencies: [
            "DXDaemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "dexa", dependencies: ["DXCommandLine"]),

        // DICOM: DCMTK (Debian libdcmtk-dev; its pkg-config file also wants libsndfile1-dev)
        // reached through a small C++ shim with a C interface; nothing imports CDCMTK but
        // DXDicom, and nothing but CDCMTK sees DCMTK's headers.
        .systemLibrary(name: "CDCMTKLibrary", pkgConfig: "dcmtk", providers: [.apt(["libdcmtk-dev", "libsndfile1-dev"])]),
        .target(name: "CDCMTK", dependencies: ["CDCMTKLibrary"]),
        // DICOM from the exam's values: the worklist, the objects (Secondary Capture so far), associations.
        .target(name: "DXDicom", dependencies: ["CDCMTK", "DXAcquisition", "DXDecomposition", "DXReport"]),
        // The DICOM service: published results -> objects -> the store's queue -> the peers.
        .target(name: "DXDicomService", dependencies: [
            "DXDicom", "DXStore", "DXAcquisition", "DXAnalysis", "DXReport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "dexa-dicomd", dependencies: [
            "DXDicom", "DXDicomService", "DXStore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Every parser outside bytes reach, as functions over bytes (docs/RELIABILITY.md,
        // "Fuzzing"); dexa-fuzz drives them under libFuzzer (scripts/fuzz) or replays inputs.
        .target(name: "DXFuzzing", dependencies: ["DXProtocol", "DXTransport", "DXControl", "DXDaemon", "DXDecomposition", "DXAnalysis", "DXAcquisition",
                                                 "DXClinical", "DXSimulator", "DXDicom",
                                                 .product(name: "NIOCore", package: "swift-nio"),
                                                 .product(name: "NIOEmbedded", package: "swift-nio")]),
        // libFuzzer's driver, declared for the fuzzing build; nothing else imports it.
        // The technologist's web console: a client of the control socket, its own process.
        .target(name: "DXConsole", dependencies: [
            "DXControl", "DXAcquisition", "DXDecomposition", "DXReport", "DXDicom",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "dexa-console", dependencies: [
            "DXConsole", "DXSpawn",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "CLibFuzzer"),
        .executableTarget(name: "dexa-fuzz", dependencies: ["DXFuzzing", "CLibFuzzer"]),
        // Not DXTestSupport: it links FoundationNetworking, which the static release build cannot.
        .executableTarget(name: "dexa-bench", dependencies: ["DXProtocol", "DXDecomposition", "DXSimulator", "DXTransport", "DXDevice", "DXAcquisition",
                                                             "DXAnalysis", "DXClinical"]),

        // The DX-1 as far as the host can tell.
        .target(name: "DXSimulator", dependencies: [
            "DXProtocol", "DXTransport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], path: "Simulator/DXSimulator", swiftSettings: optimisedInDebug),
        .executableTarget(name: "dexa-sim", dependencies: [
            "DXSimulator",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Simulator/dexa-sim"),

        .target(name: "DXTestSupport", dependencies: [
            "DXProtocol", "DXTransport", "DXControl", "DXSimulator", "DXDaemon", "DXDecomposition", "DXAcquisition", "DXAnalysis", "DXClinical",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // One test target per module, named after it; IntegrationTests start the real
        // daemon, CLI and simulator processes against each other.
        .testTarget(name: "DXProtocolTests", dependencies: ["DXProtocol"]),
        .testTarget(name: "DXClinicalTests", dependencies: ["DXClinical"]),
        .testTarget(name: "DXReportTests", dependencies: ["DXReport", "CCairo", "DXAcquisition", "DXAnalysis", "DXClinical", "DXDecomposition", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXAnalysisTests", dependencies: ["DXAnalysis", "DXDecomposition", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXDecompositionTests", dependencies: ["DXDecomposition", "DXSimulator"]),
        .testTarget(name: "DXDeviceTests", dependencies: ["DXDevice", "DXAcquisition", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXSimulatorTests", dependencies: ["DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXAcquisitionTests", dependencies: ["DXAcquisition", "DXClinical", "DXReport", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXStoreTests", dependencies: ["DXStore", "DXAcquisition", "DXAnalysis", "DXClinical", "DXTestSupport",
                                                        .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "DXSpawnTests", dependencies: ["DXSpawn"]),
        .testTarget(name: "DXControlTests", dependencies: ["DXControl", "DXAcquisition", "DXTestSupport"]),
        .testTarget(name: "DXConsoleTests", dependencies: ["DXConsole", "DXControl"]),
        .testTarget(name: "DXDaemonTests", dependencies: ["DXDaemon", "DXControl", "DXDecomposition", "DXAcquisition", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXFuzzingTests", dependencies: ["DXFuzzing", "DXAcquisition", "DXClinical", "DXControl", "DXDecomposition", "DXProtocol", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXDicomTests", dependencies: ["DXDicom", "DXAcquisition", "DXDecomposition", "DXReport", "DXSimulator", "DXTestSupport"]),
        .testTarget(name: "DXDicomServiceTests", dependencies: ["DXDicomService", "DXDicom", "DXStore", "DXAcquisition", "DXTestSupport",
                                                               .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "IntegrationTests", dependencies: ["DXConsole", "DXControl", "DXProtocol", "DXAcquisition", "DXAnalysis", "DXDicom", "DXSimulator", "DXTestSupport"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
