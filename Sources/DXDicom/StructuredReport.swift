/// A coded concept (PS3.3 Table 8.8-1 Code Sequence Macro): a value, the scheme that defines
/// it, and its meaning in words. Where each code comes from: docs/dicom-conformance.md.
public struct Code: Sendable, Equatable, Hashable {
    public var value: String
    public var scheme: String
    public var meaning: String

    public init(_ value: String, _ scheme: String, _ meaning: String) {
        self.value = value; self.scheme = scheme; self.meaning = meaning
    }

    /// The code as a Code Sequence item.
    public var item: DicomDataset {
        var ds = DicomDataset()
        ds.set(.codeValue, value)
        ds.set(.codingSchemeDesignator, scheme)
        ds.set(.codeMeaning, meaning)
        return ds
    }
}

/// One content item of a structured report's tree (PS3.3 C.17.3): its relationship to its
/// parent, its concept, its value, and its children. The document's root is a CONTAINER
/// without a relationship.
public struct SRItem: Sendable, Equatable {
    public enum Relationship: String, Sendable {
        case contains = "CONTAINS", hasObsContext = "HAS OBS CONTEXT", hasConceptMod = "HAS CONCEPT MOD", hasProperties = "HAS PROPERTIES"
        case inferredFrom = "INFERRED FROM", selectedFrom = "SELECTED FROM", hasAcqContext = "HAS ACQ CONTEXT"
    }

    public enum Value: Sendable, Equatable {
        case container(template: String?)
        case text(String)
        case code(Code)
        /// A number as its decimal text (DS, at most 16 characters) with its UCUM unit.
        case num(String, unit: Code)
        case uidref(String)
        /// A DICOM DT.
        case datetime(String)
        case image(sopClass: String, instance: String)
        /// A reference to a non-image object (an SR document).
        case composite(sopClass: String, instance: String)
    }

    public var relationship: Relationship?
    /// nil only where the template names none (an image of the image library).
    public var concept: Code?
    public var value: Value
    public var children: [SRItem]

    public init(_ relationship: Relationship?, _ concept: Code?, _ value: Value, _ children: [SRItem] = []) {
        self.relationship = relationship; self.concept = concept; self.value = value; self.children = children
    }

    public static func container(_ relationship: Relationship?, _ concept: Code, template: String? = nil, _ children: [SRItem]) -> SRItem {
        SRItem(relationship, concept, .container(template: template), children)
    }

    /// The item's attributes (PS3.3 C.17.3.2 Document Content Macro, C.18 content item
    /// macros), written into `ds`: the root's into the document itself.
    public func encode(into ds: inout DicomDataset) {
        if let relationship { ds.set(.relationshipType, relationship.rawValue) }
        switch value {
        case .container(let template):
            ds.set(.valueType, "CONTAINER")
            ds.set(.continuityOfContent, "SEPARATE")
            if let template {
                var t = DicomDataset()
                t.set(.mappingResource, "DCMR")
                t.set(.templateIdentifier, template)
                ds.set(.contentTemplateSequence, items: [t])
            }
        case .text(let s):
            ds.set(.valueType, "TEXT")
            ds.set(.textValue, s)
        case .code(let c):
            ds.set(.valueType, "CODE")
            ds.set(.conceptCodeSequence, items: [c.item])
        case .num(let n, let unit):
            ds.set(.valueType, "NUM")
            var m = DicomDataset()
            m.set(.numericValue, n)
            m.set(.measurementUnitsCodeSequence, items: [unit.item])
            ds.set(.measuredValueSequence, items: [m])
        case .uidref(let uid):
            ds.set(.valueType, "UIDREF")
            ds.set(.uid, uid)
        case .datetime(let dt):
            ds.set(.valueType, "DATETIME")
            ds.set(.dateTime, dt)
        case .image(let sopClass, let instance), .composite(let sopClass, let instance):
            if case .image = value { ds.set(.valueType, "IMAGE") } else { ds.set(.valueType, "COMPOSITE") }
            var r = DicomDataset()
            r.set(.referencedSOPClassUID, sopClass)
            r.set(.referencedSOPInstanceUID, instance)
            ds.set(.referencedSOPSequence, items: [r])
        }
        if let concept { ds.set(.conceptNameCodeSequence, items: [concept.item]) }
        if !children.isEmpty {
            ds.set(.contentSequence, items: children.map { child in
                var item = DicomDataset()
                child.encode(into: &item)
                return item
            })
        }
    }
}

/// Units (UCUM, PS3.16 CID 7181 and the dose templates).
public enum Unit {
    public static let gramsPerSquareCentimetre = Code("g/cm2", "UCUM", "gram per square centimeter")
    public static let grams = Code("g", "UCUM", "gram")
    public static let squareCentimetres = Code("cm2", "UCUM", "square centimeter")
    public static let noUnits = Code("1", "UCUM", "no units")
    public static let grayMetreSquared = Code("Gy.m2", "UCUM", "Gy.m2")
    public static let milliseconds = Code("ms", "UCUM", "ms")
    public static let seconds = Code("s", "UCUM", "s")
    public static let milliamperes = Code("mA", "UCUM", "mA")
}
