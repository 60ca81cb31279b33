-- What the firewall compares a new version with, stored with each version so that
-- a publish need not read every earlier manifest: whether it runs install scripts
-- (declared, or a binding.gyp) and whether it carries provenance attestations.
-- NULL for versions stored before (read from their manifests then).
ALTER TABLE versions ADD COLUMN install_scripts BOOLEAN;
ALTER TABLE versions ADD COLUMN attested BOOLEAN;
