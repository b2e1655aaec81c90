/*
 * Rampart's built-in crypto-miner rules (YARA, compiled by boreal).
 *
 * Each rule's `severity` meta becomes the finding's severity; `description` its title. Users add
 * their own rule files with `rampart image scan --yara FILE`; those may use the same metas.
 */

rule rampart_xmrig
{
    meta:
        description = "XMRig Monero miner"
        severity = "critical"
    strings:
        $agent = "XMRig/%s" ascii
        $name = "xmrig" ascii nocase
        $donate_opt = "--donate-level" ascii
        $donate_cfg = "\"donate-level\"" ascii
        $algo1 = "cryptonight" ascii nocase
        $algo2 = "randomx" ascii nocase
        $algo3 = "rx/0" ascii
        $pool = "\"pools\"" ascii
    condition:
        ($agent or ($name and ($donate_opt or $donate_cfg))) and any of ($algo*)
        or ($donate_cfg and $pool and any of ($algo*))
}

rule rampart_xmr_stak
{
    meta:
        description = "xmr-stak Monero miner"
        severity = "critical"
    strings:
        $a = "xmr-stak" ascii nocase
        $b = "cryptonight" ascii nocase
        $c = "pool_address" ascii
    condition:
        $a and ($b or $c)
}

rule rampart_cpuminer
{
    meta:
        description = "cpuminer / minerd CPU miner"
        severity = "critical"
    strings:
        $a = "cpuminer" ascii nocase
        $b = "minerd" ascii
        $stratum = "stratum+tcp://" ascii nocase
        $algo = "--algo" ascii
        $c = "scrypt" ascii
    condition:
        ($a or $b) and ($stratum or $algo) and ($c or $stratum)
}

rule rampart_stratum_url
{
    meta:
        description = "Stratum mining pool URL"
        severity = "high"
    strings:
        $s = /stratum\+(tcp|ssl|tls):\/\/[a-z0-9.\-]{3,}(:[0-9]{2,5})?/ nocase
    condition:
        $s
}

rule rampart_mining_pool_domain
{
    meta:
        description = "Known mining pool domain"
        severity = "high"
    strings:
        $p1 = "minexmr.com" ascii nocase
        $p2 = "xmrpool.eu" ascii nocase
        $p3 = "supportxmr.com" ascii nocase
        $p4 = "nanopool.org" ascii nocase
        $p5 = "moneroocean.stream" ascii nocase
        $p6 = "hashvault.pro" ascii nocase
        $p7 = "f2pool.com" ascii nocase
        $p8 = "2miners.com" ascii nocase
        $p9 = "herominers.com" ascii nocase
        $p10 = "c3pool.com" ascii nocase
        $p11 = "unmineable.com" ascii nocase
        $p12 = "nicehash.com" ascii nocase
        $p13 = "minergate.com" ascii nocase
        $p14 = "dwarfpool.com" ascii nocase
        $p15 = "ethermine.org" ascii nocase
    condition:
        any of them
}
